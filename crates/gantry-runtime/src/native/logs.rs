//! Container logs in the CRI format: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n`.
//!
//! `F` ends a line; `P` marks a piece of a line longer than the writer's line limit (or one cut short by the
//! stream's end). The node agent reads these files to serve `kubectl logs`, so the format is the kubelet's.
//! Files are rotated by size: `<log>` → `<log>.1` → ... → `<log>.<max_files - 1>`, the oldest dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Longest piece written as one log line; longer lines are split into `P` pieces, as containerd does.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Writes a container's log with size-based rotation.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`, creating its directory. `max_bytes` of 0 disables rotation;
    /// `max_files` counts the live file.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, size, max_bytes, max_files: max_files.max(1) })
    }

    /// Writes one line (or piece of a line), stamped now.
    pub fn write_entry(&mut self, stream: Stream, partial: bool, content: &[u8]) -> std::io::Result<()> {
        let mut entry = Vec::with_capacity(content.len() + 48);
        entry.extend_from_slice(jiff::Timestamp::now().to_string().as_bytes());
        entry.push(b' ');
        entry.extend_from_slice(stream.as_str().as_bytes());
        entry.extend_from_slice(if partial { b" P " } else { b" F " });
        entry.extend_from_slice(content);
        entry.push(b'\n');
        if self.max_bytes > 0 && self.size > 0 && self.size + entry.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }

    /// Reopens the file at the same path (after someone else moved it away).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.max_files - 1).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.reopen()
    }
}

/// Splits a byte stream into log entries: complete lines, and pieces of over-long lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes read from the stream; calls `emit(partial, content)` for each entry they complete.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&bytes[..newline]);
            self.flush_long(&mut emit);
            emit(false, &self.pending);
            self.pending.clear();
            bytes = &bytes[newline + 1..];
        }
        self.pending.extend_from_slice(bytes);
        self.flush_long(&mut emit);
    }

    /// The stream ended: a last line without a newline is written as a partial piece, as containerd does.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending.clear();
        }
    }

    fn flush_long(&mut self, emit: &mut impl FnMut(bool, &[u8])) {
        while self.pending.len() > MAX_LINE_BYTES {
            emit(true, &self.pending[..MAX_LINE_BYTES]);
            self.pending.drain(..MAX_LINE_BYTES);
        }
    }
}

/// One parsed log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When the runtime read it.
    pub timestamp: jiff::Timestamp,
    /// Its stream.
    pub stream: Stream,
    /// A piece of a longer line.
    pub partial: bool,
    /// The bytes, without the newline.
    pub content: Vec<u8>,
}

/// Parses one line of a CRI log file; `None` for a malformed line.
pub fn parse_entry(line: &[u8]) -> Option<LogEntry> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(LogEntry { timestamp, stream, partial, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |partial, content| out.push((partial, content.to_vec())));
        }
        splitter.finish(|partial, content| out.push((partial, content.to_vec())));
        out
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(split(&[b"hel", b"lo\nwor", b"ld\n"]), [(false, b"hello".to_vec()), (false, b"world".to_vec())]);
    }

    #[test]
    fn a_last_line_without_newline_is_partial() {
        assert_eq!(split(&[b"a\nb"]), [(false, b"a".to_vec()), (true, b"b".to_vec())]);
    }

    #[test]
    fn over_long_lines_become_partial_pieces() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let mut input = long.clone();
        input.push(b'\n');
        let out = split(&[&input]);
        assert_eq!(out.len(), 3);
        assert!(out[0].0 && out[1].0 && !out[2].0);
        assert_eq!(out.iter().map(|(_, c)| c.len()).sum::<usize>(), long.len());
    }

    #[test]
    fn entries_round_trip_through_the_parser() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c/0.log");
        let mut writer = LogWriter::open(&path, 0, 1).expect("open");
        writer.write_entry(Stream::Stderr, false, b"oops: a b").expect("write");
        writer.write_entry(Stream::Stdout, true, b"").expect("write");
        let text = std::fs::read(&path).expect("read");
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        let first = parse_entry(lines[0]).expect("parse");
        assert_eq!((first.stream, first.partial, first.content.as_slice()), (Stream::Stderr, false, &b"oops: a b"[..]));
        let second = parse_entry(lines[1]).expect("parse");
        assert!(second.partial && second.content.is_empty());
        assert!(parse_entry(b"garbage").is_none());
    }

    #[test]
    fn rotation_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, 200, 3).expect("open");
        for i in 0..40 {
            writer
                .write_entry(Stream::Stdout, false, format!("line {i:03} padding padding").as_bytes())
                .expect("write");
        }
        assert!(path.exists());
        assert!(dir.path().join("0.log.1").exists());
        assert!(dir.path().join("0.log.2").exists());
        assert!(!dir.path().join("0.log.3").exists());
        assert!(std::fs::metadata(&path).expect("meta").len() <= 200);
        let live = std::fs::read_to_string(&path).expect("read");
        assert!(live.contains("line 039"), "{live}");
    }
}
