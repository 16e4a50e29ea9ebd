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

fn one_line(value: &Json) -> String {
    match value {
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(one_line).collect();
            format!("[{}]", parts.join(", "))
        }
        Json::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), one_line(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

fn write(value: &Json, indent: usize, out: &mut String) {
    let flat = one_line(value);
    if flat.len() + indent <= WIDTH {
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
        _ => out.push_str(&flat),
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
