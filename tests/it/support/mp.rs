//! A raw msgpack peer for tests: writes values and reads them back with
//! rmpv directly, independent of plugtap's codec.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rmpv::Value;

/// A blocking Unix-socket peer speaking bare msgpack.
pub struct MpPeer {
    pub stream: UnixStream,
}

impl MpPeer {
    /// Connects with a 10 s read timeout.
    pub fn connect(path: &Path) -> MpPeer {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        MpPeer { stream }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Writes one value.
    pub fn send(&mut self, v: &Value) {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        self.send_raw(&buf);
    }

    /// Reads one value.
    pub fn recv(&mut self) -> Value {
        rmpv::decode::read_value(&mut self.stream).expect("a msgpack value")
    }

    /// Reads one value, or `None` at end of stream or on error.
    pub fn try_recv(&mut self) -> Option<Value> {
        rmpv::decode::read_value(&mut self.stream).ok()
    }

    /// Sends `[0, msgid, method, params]` and returns the reply.
    pub fn call(&mut self, msgid: u32, method: &str, params: Value) -> Value {
        self.send(&request(msgid, method, params));
        self.recv()
    }
}

/// `[0, msgid, method, params]`.
pub fn request(msgid: u32, method: &str, params: Value) -> Value {
    Value::Array(vec![0.into(), msgid.into(), method.into(), params])
}

/// `[1, msgid, error, result]`.
pub fn response(msgid: u32, error: Value, result: Value) -> Value {
    Value::Array(vec![1.into(), msgid.into(), error, result])
}

/// A msgpack map from string keys.
pub fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect(),
    )
}
