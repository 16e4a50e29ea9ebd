//! The HTTP exchange a Kong emulation runs a plugin on: the client's
//! request, the upstream's response, and how Kong's PDK presents them
//! (header tables with lowercase names and case-insensitive lookup, query
//! tables where a bare flag is `true`).

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::spec::kong::{RequestSpec, UpstreamSpec};
use crate::value_json;

/// The client's request, all defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name, without port.
    pub host: String,
    /// Port Kong listens on.
    pub port: u16,
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    /// Headers in order, names as written.
    pub headers: Headers,
    /// Raw body.
    pub body: Vec<u8>,
    /// Client address.
    pub client_ip: String,
    /// Client port.
    pub client_port: u16,
}

/// The upstream service's response.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// Raw body.
    pub body: Vec<u8>,
}

/// An ordered header list with Kong's lookup rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    fn from_spec(map: &IndexMap<String, Json>) -> Headers {
        let mut out = Vec::new();
        for (name, value) in map {
            match value {
                Json::String(s) => out.push((name.clone(), s.clone())),
                Json::Array(items) => out.extend(
                    items
                        .iter()
                        .filter_map(Json::as_str)
                        .map(|s| (name.clone(), s.to_owned())),
                ),
                _ => {}
            }
        }
        Headers(out)
    }

    /// The first value of a header; names compare case-insensitively and
    /// `_` matches `-`, as in nginx's header table.
    pub fn get(&self, name: &str) -> Option<&str> {
        let want = normalise(name);
        self.0
            .iter()
            .find(|(n, _)| normalise(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.clear(name);
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// Adds a value to `name`.
    pub fn add(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// Removes `name`.
    pub fn clear(&mut self, name: &str) {
        let want = normalise(name);
        self.0.retain(|(n, _)| normalise(n) != want);
    }

    /// The table Kong's `get_headers` returns: lowercase names, a string
    /// for a single value, a list for repeated ones, at most `max` names.
    pub fn table(&self, max: usize) -> Map<String, Json> {
        let mut out: Map<String, Json> = Map::new();
        for (name, value) in &self.0 {
            let key = name.to_lowercase();
            let len = out.len();
            match out.get_mut(&key) {
                Some(Json::Array(list)) => list.push(Json::from(value.as_str())),
                Some(single) => {
                    let first = single.take();
                    *single = Json::Array(vec![first, Json::from(value.as_str())]);
                }
                None if len < max => {
                    out.insert(key, Json::from(value.as_str()));
                }
                None => {}
            }
        }
        out
    }

    /// Names and values, with lowercase names and repeated headers as
    /// lists, for reports.
    pub fn to_json(&self) -> Json {
        Json::Object(self.table(usize::MAX))
    }
}

fn normalise(name: &str) -> String {
    name.to_lowercase().replace('_', "-")
}

impl HttpRequest {
    /// The request `base` describes, with `over`'s fields taking precedence.
    pub fn from_spec(base: &RequestSpec, over: Option<&RequestSpec>) -> HttpRequest {
        let pick = |f: fn(&RequestSpec) -> Option<String>| over.and_then(f).or_else(|| f(base));
        let scheme = pick(|r| r.scheme.clone()).unwrap_or_else(|| "http".into());
        let host = pick(|r| r.host.clone()).unwrap_or_else(|| "localhost".into());
        let port = over
            .and_then(|r| r.port)
            .or(base.port)
            .unwrap_or(if scheme == "https" { 8443 } else { 8000 });
        let headers = match over
            .and_then(|r| r.headers.as_ref())
            .or(base.headers.as_ref())
        {
            Some(map) => Headers::from_spec(map),
            None => Headers(vec![
                ("host".into(), format!("{host}:{port}")),
                ("user-agent".into(), "plugtap".into()),
                ("accept".into(), "*/*".into()),
            ]),
        };
        let body = over
            .and_then(|r| r.body.as_ref())
            .or(base.body.as_ref())
            .map(body_bytes)
            .unwrap_or_default();
        HttpRequest {
            method: pick(|r| r.method.clone()).unwrap_or_else(|| "GET".into()),
            path: pick(|r| r.path.clone()).unwrap_or_else(|| "/".into()),
            query: pick(|r| r.query.clone()).unwrap_or_default(),
            client_ip: pick(|r| r.client_ip.clone()).unwrap_or_else(|| "127.0.0.1".into()),
            client_port: over
                .and_then(|r| r.client_port)
                .or(base.client_port)
                .unwrap_or(40000),
            scheme,
            host,
            port,
            headers,
            body,
        }
    }

    /// Path and query, as `kong.request.get_path_with_query` returns them.
    pub fn path_with_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    /// The full URL, for reports.
    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}{}",
            self.scheme,
            self.host,
            self.port,
            self.path_with_query()
        )
    }

    /// The table `kong.request.get_query` returns: a flag without a value
    /// is `true`, a repeated argument a list; at most `max` names.
    pub fn query_table(&self, max: usize) -> Map<String, Json> {
        let mut out: Map<String, Json> = Map::new();
        for part in self.query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (unescape(n), Json::from(unescape(v))),
                None => (unescape(part), Json::Bool(true)),
            };
            let len = out.len();
            match out.get_mut(&name) {
                Some(Json::Array(list)) => list.push(value),
                Some(single) => {
                    let first = single.take();
                    *single = Json::Array(vec![first, value]);
                }
                None if len < max => {
                    out.insert(name, value);
                }
                None => {}
            }
        }
        out
    }

    /// `kong.request.get_query_arg`: the first value, `true` for a flag.
    pub fn query_arg(&self, name: &str) -> Option<Json> {
        match self.query_table(usize::MAX).remove(name)? {
            Json::Array(mut list) if !list.is_empty() => Some(list.swap_remove(0)),
            other => Some(other),
        }
    }
}

impl Upstream {
    /// The upstream response the spec describes (200, no headers, empty
    /// body by default).
    pub fn from_spec(spec: &UpstreamSpec) -> Upstream {
        Upstream {
            status: spec.status.unwrap_or(200),
            headers: spec
                .headers
                .as_ref()
                .map(Headers::from_spec)
                .unwrap_or_default(),
            body: spec.body.as_ref().map(body_bytes).unwrap_or_default(),
        }
    }
}

/// A spec body (string or `{"$bin": ...}`, validated at load) as bytes.
pub fn body_bytes(v: &Json) -> Vec<u8> {
    match v {
        Json::String(s) => s.clone().into_bytes(),
        other => match value_json::from_json(other) {
            Ok(rmpv::Value::Binary(b)) => b,
            _ => Vec::new(),
        },
    }
}

/// Body bytes as JSON: a string when they are UTF-8, else `{"$bin": ...}`.
pub fn body_json(bytes: &[u8]) -> Json {
    match std::str::from_utf8(bytes) {
        Ok(text) => Json::from(text),
        Err(_) => value_json::to_json(&rmpv::Value::Binary(bytes.to_vec())),
    }
}

/// Decodes `%XX` escapes and `+` in a query component.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_lookup_and_table() {
        let h = Headers(vec![
            ("Host".into(), "a".into()),
            ("X-Multi".into(), "1".into()),
            ("x-multi".into(), "2".into()),
        ]);
        assert_eq!(h.get("host"), Some("a"));
        assert_eq!(h.get("x_multi"), Some("1"));
        assert_eq!(
            Json::Object(h.table(100)),
            json!({"host": "a", "x-multi": ["1", "2"]})
        );
        assert_eq!(h.table(1).len(), 1);
    }

    #[test]
    fn query_table() {
        let r = HttpRequest::from_spec(
            &RequestSpec {
                query: Some("a=1&a=2&flag&q=hello+w%6Frld&bad=%zz".into()),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            Json::Object(r.query_table(100)),
            json!({"a": ["1", "2"], "flag": true, "q": "hello world", "bad": "%zz"})
        );
        assert_eq!(r.query_arg("a"), Some(json!("1")));
        assert_eq!(r.query_arg("flag"), Some(json!(true)));
        assert_eq!(r.query_arg("nope"), None);
        assert_eq!(
            r.path_with_query(),
            "/?a=1&a=2&flag&q=hello+w%6Frld&bad=%zz"
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let base = RequestSpec {
            host: Some("example.com".into()),
            ..Default::default()
        };
        let over = RequestSpec {
            path: Some("/x".into()),
            ..Default::default()
        };
        let r = HttpRequest::from_spec(&base, Some(&over));
        assert_eq!(r.url(), "http://example.com:8000/x");
        assert_eq!(r.headers.get("host"), Some("example.com:8000"));
        assert_eq!(r.method, "GET");
    }
}
