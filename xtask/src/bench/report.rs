//! Markdown tables, and the files under target/bench/ they are written to.

use std::{fmt::Write as _, fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};

/// A markdown table built row by row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        let rule: Vec<String> = self.header.iter().map(|_| "---".to_owned()).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            let mut cells = row.clone();
            cells.resize(self.header.len(), String::new());
            out.push_str(&line(&cells));
        }
        out
    }
}

/// One sub-benchmark's report: a title, notes and tables, printed and written to
/// `<dir>/<name>.md`.
#[derive(Debug, Default)]
pub struct Report {
    text: String,
}

impl Report {
    pub fn new(title: &str, context: &str) -> Self {
        Self {
            text: format!("## {title}\n\n{context}\n\n"),
        }
    }

    pub fn table(&mut self, caption: &str, table: &Table) {
        if !caption.is_empty() {
            let _ = write!(self.text, "{caption}\n\n");
        }
        self.text.push_str(&table.render());
        self.text.push('\n');
    }

    pub fn note(&mut self, text: &str) {
        let _ = write!(self.text, "{text}\n\n");
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.md"));
        fs::write(&path, &self.text).with_context(|| format!("writing {}", path.display()))?;
        println!("{}\n(written to {})\n", self.text, path.display());
        Ok(())
    }
}

/// `12 345` style thousands.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// Thousands with one decimal and a `k`: `74.4k`.
pub fn kilo(n: f64) -> String {
    format!("{:.1}k", n / 1000.0)
}

pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "–".to_owned();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

/// Milliseconds with three decimals, as in the issue (`0.037`).
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

pub fn ns(n: f64) -> String {
    format!("{n:.0} ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_renders_markdown_and_pads_short_rows() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        t.row(vec!["3".into()]);
        assert_eq!(
            t.render(),
            "| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 |  |\n"
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(999), "999");
        assert_eq!(kilo(74_418.2), "74.4k");
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(1, 0), "–");
        assert_eq!(ms(Duration::from_micros(37)), "0.037");
        assert_eq!(ns(41.6), "42 ns");
    }
}
