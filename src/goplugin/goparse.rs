//! Go's `strconv` behaviour where go-plugin's texts depend on it: `Atoi`
//! with its exact error messages, `ParseBool`, and `%q` quoting.

/// `strconv.Atoi` on a 64-bit platform: an optional sign and decimal
/// digits. The error is Go's text, e.g.
/// `strconv.Atoi: parsing "x": invalid syntax`.
pub fn go_atoi(s: &str) -> Result<i64, String> {
    let err = |what: &str| format!("strconv.Atoi: parsing {}: {what}", go_quote(s));
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    s.parse::<i64>().map_err(|_| err("value out of range"))
}

/// `strconv.ParseBool`: `None` when the text is not one of Go's spellings.
pub fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `%q` for a string: double quotes, backslash escapes for quotes,
/// backslashes and control characters; printable Unicode kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_like_go() {
        assert_eq!(go_atoi("1"), Ok(1));
        assert_eq!(go_atoi("+7"), Ok(7));
        assert_eq!(go_atoi("-2"), Ok(-2));
        assert_eq!(
            go_atoi("x"),
            Err("strconv.Atoi: parsing \"x\": invalid syntax".into())
        );
        assert_eq!(
            go_atoi(""),
            Err("strconv.Atoi: parsing \"\": invalid syntax".into())
        );
        assert_eq!(
            go_atoi("99999999999999999999"),
            Err("strconv.Atoi: parsing \"99999999999999999999\": value out of range".into())
        );
        assert_eq!(
            go_atoi(" 1").unwrap_err(),
            "strconv.Atoi: parsing \" 1\": invalid syntax"
        );
    }

    #[test]
    fn bools_and_quotes() {
        assert_eq!(go_parse_bool("True"), Some(true));
        assert_eq!(go_parse_bool("0"), Some(false));
        assert_eq!(go_parse_bool("yes"), None);
        assert_eq!(go_quote("a\"b\n\x01é"), "\"a\\\"b\\n\\x01é\"");
    }
}
