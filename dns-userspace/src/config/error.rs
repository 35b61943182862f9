//! [`ConfigError`]: a problem with the configuration, located where possible.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::dns::zone::ZoneError;

/// A problem with the configuration, located where possible.
///
/// Displays as `<file>:<line>:<column>: <problem>`, or with fewer parts when the line or
/// column is unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), Position(*line, *column))]
pub struct ConfigError {
    file: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

/// `:line:column`, `:line` or nothing.
struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.0 {
            write!(f, ":{line}")?;
            if let Some(column) = self.1 {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error about `file` as a whole.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error at `line` and `column` (1-based, in characters) of `file`.
    pub(crate) fn at(
        file: impl Into<PathBuf>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// The file the problem is in (the config file or a zone file).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line, if known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column (in characters), if known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The problem without its location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ZoneError> for ConfigError {
    fn from(e: ZoneError) -> Self {
        Self {
            file: e.file().to_path_buf(),
            line: e.line(),
            column: None,
            message: e.message().to_string(),
        }
    }
}
