//! Reading recordings line by line, in constant memory.
//!
//! [`Reader`] checks the header first (format and version), then yields
//! one [`Line`] per line. Errors name the file and line
//! (`rec.jsonl:12: ...`); a last line without its newline that does not
//! parse is reported as cut short, which is what a recording killed with
//! SIGKILL looks like.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{FORMAT, Header, Line, OLDEST_VERSION, VERSION};

/// A recording that cannot be read.
#[derive(Debug, thiserror::Error)]
pub struct ReadError {
    /// File name.
    pub file: String,
    /// 1-based line, when the error is about one.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}:{n}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Streams the lines of a recording; see the module docs.
pub struct Reader<R> {
    input: R,
    file: String,
    line_no: u64,
    text: String,
    header: Header,
}

impl Reader<BufReader<File>> {
    /// Opens a recording and reads its header.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = path.display().to_string();
        let f = File::open(path).map_err(|e| ReadError {
            file: file.clone(),
            line: None,
            message: format!("cannot open recording: {e}"),
        })?;
        Reader::new(BufReader::new(f), &file)
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads the header from `input`; `file` names it in errors.
    pub fn new(input: R, file: &str) -> Result<Self, ReadError> {
        let mut reader = Reader {
            input,
            file: file.to_owned(),
            line_no: 0,
            text: String::new(),
            header: Header {
                format: String::new(),
                version: 0,
                plugtap: String::new(),
                protocol: Default::default(),
                listen: Default::default(),
                upstream: Default::default(),
                started_at: String::new(),
                redact: vec![],
                command: None,
                mode: None,
            },
        };
        let first = match reader.next_line() {
            None => return Err(reader.error(None, "empty file: not a plugtap recording".into())),
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                if let Some(name) = unknown_protocol(reader.text()) {
                    return Err(reader.error(
                        Some(1),
                        format!(
                            "the header names protocol `{name}`, which this plugtap does not know (it knows {})",
                            crate::protocol::Protocol::valid_names()
                        ),
                    ));
                }
                return Err(
                    reader.error(Some(1), format!("not a plugtap recording ({})", e.message))
                );
            }
        };
        match first {
            Line::Header(h)
                if h.format == FORMAT && (OLDEST_VERSION..=VERSION).contains(&h.version) =>
            {
                reader.header = h
            }
            Line::Header(h) if h.format == FORMAT => {
                return Err(reader.error(
                    Some(1),
                    format!(
                        "recording format version {} is not supported (this plugtap reads {OLDEST_VERSION} to {VERSION})",
                        h.version
                    ),
                ));
            }
            _ => {
                return Err(reader.error(
                    Some(1),
                    format!("not a plugtap recording: the first line must be a {FORMAT} header"),
                ));
            }
        }
        Ok(reader)
    }

    /// The header line.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The line number of the line returned last.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The text of the line returned last (without its newline).
    pub fn text(&self) -> &str {
        self.text.trim_end_matches(['\n', '\r'])
    }

    fn error(&self, line: Option<u64>, message: String) -> ReadError {
        ReadError {
            file: self.file.clone(),
            line,
            message,
        }
    }

    fn next_line(&mut self) -> Option<Result<Line, ReadError>> {
        loop {
            self.text.clear();
            match self.input.read_line(&mut self.text) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(
                        self.error(Some(self.line_no + 1), format!("cannot read: {e}"))
                    ));
                }
            }
            self.line_no += 1;
            let line = self.text.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            let complete = self.text.ends_with('\n');
            return Some(serde_json::from_str::<Line>(line).map_err(|e| {
                let message = if complete {
                    format!("column {}: {}", e.column(), strip_position(&e))
                } else {
                    format!("the last line is cut short ({e}); was the proxy killed?")
                };
                self.error(Some(self.line_no), message)
            }));
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Line, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line()
    }
}

/// The protocol of a header line whose protocol is not one we know.
fn unknown_protocol(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("type")? != "header" || v.get("format")? != FORMAT {
        return None;
    }
    let name = v.get("protocol")?.as_str()?;
    name.parse::<crate::protocol::Protocol>()
        .is_err()
        .then(|| name.to_owned())
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}
