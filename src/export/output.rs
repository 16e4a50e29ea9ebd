//! Writing a spec: pretty JSON with two-space indents, short arrays and
//! objects on one line, keys in the order the builders inserted them, and
//! a `//` comment first. The same value always gives the same text.

use serde_json::Value as Json;

/// Values whose one-line form fits in this many columns stay on one line.
const WIDTH: usize = 100;

/// The spec text: the comment, then the value.
pub fn render(comment: &str, value: &Json) -> String {
    let mut out = String::new();
    for line in comment.lines() {
        out.push_str("// ");
        out.push_str(line);
        out.push('\n');
    }
    write(value, 0, &mut out);
    out.push('\n');
    out
}

/// Appends the one-line form of `value` to `out`; false (with `out`
/// partly written) as soon as `out` grows past `limit`, so a large value
/// costs no more than the width.
fn one_line(value: &Json, out: &mut String, limit: usize) -> bool {
    match value {
        Json::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !one_line(v, out, limit) {
                    return false;
                }
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                if !one_line(v, out, limit) {
                    return false;
                }
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
    out.len() <= limit
}

fn write(value: &Json, indent: usize, out: &mut String) {
    let mut flat = String::new();
    if one_line(value, &mut flat, WIDTH.saturating_sub(indent)) {
        out.push_str(&flat);
        return;
    }
    let pad = " ".repeat(indent + 2);
    match value {
        Json::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad);
                write(item, indent + 2, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&" ".repeat(indent));
            out.push(']');
        }
        Json::Object(map) => {
            out.push_str("{\n");
            for (i, (k, v)) in map.iter().enumerate() {
                out.push_str(&pad);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                write(v, indent + 2, out);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_values_stay_on_one_line() {
        let v = json!({"role": "server", "list": [1, 2], "long": ["x".repeat(60), "y".repeat(60)]});
        let text = render("hello", &v);
        assert_eq!(
            text,
            format!(
                "// hello\n{{\n  \"role\": \"server\",\n  \"list\": [1, 2],\n  \"long\": [\n    \"{}\",\n    \"{}\"\n  ]\n}}\n",
                "x".repeat(60),
                "y".repeat(60)
            )
        );
        let parsed: Json = serde_json::from_str(text.trim_start_matches("// hello\n")).unwrap();
        assert_eq!(parsed, v);
    }
}
