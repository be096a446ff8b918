//! Per-worker relay buffers, taken only while data is in flight.

/// A free list of equal-sized buffers. An idle tunnel holds none: buffers
/// come back as soon as they drain.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Box<[u8]>>,
    size: usize,
    keep: usize,
    /// Buffers taken and not given back.
    lent: usize,
}

impl BufferPool {
    /// A pool of `size`-byte buffers that keeps at most `keep` free ones.
    pub fn new(size: usize, keep: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            size,
            keep,
            lent: 0,
        }
    }

    /// A buffer, reused when one is free.
    pub fn take(&mut self) -> Box<[u8]> {
        self.lent += 1;
        self.free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    /// Returns a buffer; past `keep` free buffers it is freed.
    pub fn give(&mut self, buf: Box<[u8]>) {
        self.lent = self.lent.saturating_sub(1);
        if self.free.len() < self.keep {
            self.free.push(buf);
        }
    }

    /// Free buffers held.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Buffers lent out now (relay buffers in use).
    pub fn in_use(&self) -> usize {
        self.lent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let mut p = BufferPool::new(16, 1);
        let a = p.take();
        let b = p.take();
        assert_eq!(a.len(), 16);
        p.give(a);
        p.give(b);
        assert_eq!(p.free(), 1);
        let _ = p.take();
        assert_eq!(p.free(), 0);
        assert_eq!(p.in_use(), 1);
    }
}
