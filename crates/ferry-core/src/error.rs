//! Error classes and process exit codes shared by every job.

use std::fmt;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Bad input, configuration or usage: the operator must fix it.
    User,
    /// A store or network failed: retrying later may help.
    External,
    /// A bug in Ferry.
    Internal,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::User => "user",
            ErrorClass::External => "external",
            ErrorClass::Internal => "internal",
        })
    }
}

/// Implemented by every library error so the binary can report and exit consistently.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
    /// Whether the same operation may succeed if retried.
    fn retryable(&self) -> bool {
        self.class() == ErrorClass::External
    }
}

/// The process exit codes of every `ferry` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything was done.
    Done = 0,
    /// The run finished but some items failed, or verification found differences.
    ItemFailures = 1,
    /// A fatal error or a usage error: nothing (more) was done.
    Fatal = 2,
}

impl ExitStatus {
    /// `Done` when `failures` is zero, `ItemFailures` otherwise.
    pub fn from_failures(failures: u64) -> Self {
        if failures == 0 {
            ExitStatus::Done
        } else {
            ExitStatus::ItemFailures
        }
    }

    /// The numeric code for `std::process::exit`.
    pub fn code(self) -> i32 {
        self as i32
    }
}
