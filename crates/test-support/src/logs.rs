//! [`LogCapture`]: collects what a `tracing_subscriber::fmt` subscriber writes, for tests that
//! assert on log lines (or on their absence, such as a secret).

use std::io;
use std::sync::{Arc, Mutex};

/// A shared in-memory log sink. Clones write into the same buffer; hand a `fmt` subscriber a
/// writer with `.with_writer(move || capture.clone())`.
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// Appends `buf` (for writers that route lines to a capture of their choosing).
    pub fn append(&self, buf: &[u8]) {
        self.lock().extend_from_slice(buf);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A test that panicked mid-write leaves whole bytes behind: keep reading.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
