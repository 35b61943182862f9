//! `$INCLUDE`s expanded in place before parsing, with a map from each line of the expanded
//! text back to its file and line, so a problem inside an included file is reported there
//! (hickory-proto's parser includes files itself, but its errors carry no position).
//!
//! The rules are hickory-proto's: `$INCLUDE <file>` at the start of an entry, the file
//! relative to the including file's directory, no origin argument; the included text goes
//! on with the including file's `$ORIGIN`, `$TTL` and previous owner.

use std::path::{Path, PathBuf};

use crate::dns::zone::{ZoneError, entry_starts};

/// Deepest nesting of `$INCLUDE`s.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// A zone file with its includes expanded.
#[derive(Debug, Default)]
pub struct Expanded {
    pub text: String,
    /// For each line of `text` (0-based), its file and 1-based line there.
    lines: Vec<(PathBuf, usize)>,
}

impl Expanded {
    /// The file and line that line `line` (1-based) of the expanded text came from.
    pub fn origin(&self, line: usize) -> Option<(&Path, usize)> {
        self.lines
            .get(line.checked_sub(1)?)
            .map(|(f, l)| (f.as_path(), *l))
    }
}

/// `text` (the contents of `file`) with every `$INCLUDE` replaced by the included file,
/// recursively.
pub fn expand(file: &Path, text: &str) -> Result<Expanded, ZoneError> {
    let mut out = Expanded::default();
    let mut stack = vec![file.to_path_buf()];
    expand_into(file, text, &mut out, &mut stack)?;
    Ok(out)
}

fn expand_into(
    file: &Path,
    text: &str,
    out: &mut Expanded,
    stack: &mut Vec<PathBuf>,
) -> Result<(), ZoneError> {
    let starts: Vec<usize> = entry_starts(text).iter().map(|&(_, l)| l).collect();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let include = starts.contains(&number).then(|| directive(line)).flatten();
        let Some(arg) = include else {
            out.text.push_str(line);
            if !line.ends_with('\n') {
                out.text.push('\n');
            }
            out.lines.push((file.to_path_buf(), number));
            continue;
        };
        let at = |message: String| ZoneError::new(file, Some(number), message);
        let target = match arg {
            Include::File(name) => name,
            Include::Missing => return Err(at("$INCLUDE needs a file name".into())),
            Include::WithOrigin(name) => {
                return Err(at(format!(
                    "$INCLUDE {name}: an origin after the file name is not supported; put \
                     $ORIGIN in the included file"
                )));
            }
        };
        let path = match Path::new(&target) {
            p if p.is_absolute() => p.to_path_buf(),
            p => file.parent().unwrap_or(Path::new("")).join(p),
        };
        if stack.len() > MAX_INCLUDE_DEPTH {
            return Err(at(format!(
                "$INCLUDE {target}: includes nested more than {MAX_INCLUDE_DEPTH} deep"
            )));
        }
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if stack
            .iter()
            .any(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()) == canonical)
        {
            return Err(at(format!(
                "$INCLUDE {target}: {} includes itself",
                path.display()
            )));
        }
        let included = std::fs::read_to_string(&path).map_err(|e| {
            at(format!(
                "$INCLUDE {target}: cannot read {}: {e}",
                path.display()
            ))
        })?;
        stack.push(path.clone());
        expand_into(&path, &included, out, stack)?;
        stack.pop();
    }
    Ok(())
}

/// What a `$INCLUDE` line says.
#[derive(Debug, PartialEq, Eq)]
enum Include {
    File(String),
    Missing,
    WithOrigin(String),
}

/// The argument of `line` if it is a `$INCLUDE` directive (at the start of the line, as the
/// parser takes it).
fn directive(line: &str) -> Option<Include> {
    let rest = line.strip_prefix("$INCLUDE")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.split(';').next().unwrap_or_default().trim();
    let (name, after) = match rest.strip_prefix('"') {
        Some(quoted) => match quoted.split_once('"') {
            Some((name, after)) => (name.to_string(), after),
            None => (quoted.to_string(), ""),
        },
        None => match rest.split_once(char::is_whitespace) {
            Some((name, after)) => (name.to_string(), after),
            None => (rest.to_string(), ""),
        },
    };
    Some(if name.is_empty() {
        Include::Missing
    } else if after.trim().is_empty() {
        Include::File(name)
    } else {
        Include::WithOrigin(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(
            directive("$INCLUDE a.zone\n"),
            Some(Include::File("a.zone".into()))
        );
        assert_eq!(
            directive("$INCLUDE \"my zone\" ; c\n"),
            Some(Include::File("my zone".into()))
        );
        assert_eq!(directive("$INCLUDE\n"), Some(Include::Missing));
        assert_eq!(
            directive("$INCLUDE a.zone sub.example.\n"),
            Some(Include::WithOrigin("a.zone".into()))
        );
        assert_eq!(directive("$INCLUDED x\n"), None);
        assert_eq!(directive(" $INCLUDE x\n"), None);
        assert_eq!(directive("www A 192.0.2.1\n"), None);
    }
}
