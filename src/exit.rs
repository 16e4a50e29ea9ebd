//! Exit codes, documented in README.md.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every expectation held |
//! | 1 | an expectation failed, or a peer sent a malformed message |
//! | 2 | usage error or runtime error (bad spec, missing socket, I/O failure) |

use std::process::ExitCode;

/// Everything passed.
pub const OK: u8 = 0;
/// An expectation failed or a malformed message arrived.
pub const FAILED: u8 = 1;
/// Usage or runtime error.
pub const ERROR: u8 = 2;

/// How a role run ended, when it did not end in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Passed,
    /// Exit 1.
    Failed,
    /// Exit with this code (the proxy's wrapper modes pass on the wrapped
    /// server's or plugin's status).
    Code(u8),
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        ExitCode::from(match o {
            Outcome::Passed => OK,
            Outcome::Failed => FAILED,
            Outcome::Code(c) => c,
        })
    }
}
