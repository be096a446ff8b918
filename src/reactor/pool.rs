//! Per-worker relay buffers and kernel pipes, taken only while data is in
//! flight.

use crate::sys::splice::KernelPipe;

/// A free list of equal-sized buffers, and one of kernel pipes for
/// splice(2). An idle tunnel holds neither: both come back as soon as they
/// drain.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Box<[u8]>>,
    size: usize,
    keep: usize,
    pipes: Vec<KernelPipe>,
    /// Bytes a kernel pipe holds; 0 turns splice off.
    pipe_size: usize,
}

impl BufferPool {
    /// A pool of `size`-byte buffers that keeps at most `keep` free ones.
    pub fn new(size: usize, keep: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            size,
            keep,
            pipes: Vec::new(),
            pipe_size: 0,
        }
    }

    /// Relays through kernel pipes of `size` bytes (splice(2)) when one can
    /// be had; 0 relays through buffers only.
    pub fn with_pipes(mut self, size: usize) -> Self {
        self.pipe_size = size;
        self
    }

    /// Bytes one kernel pipe takes at a time (0: splice is off).
    pub fn pipe_size(&self) -> usize {
        self.pipe_size
    }

    /// An empty kernel pipe, or `None` when splice is off or no pipe can be
    /// made (out of descriptors): then the caller relays through a buffer.
    pub fn take_pipe(&mut self) -> Option<KernelPipe> {
        if self.pipe_size == 0 {
            return None;
        }
        self.pipes
            .pop()
            .or_else(|| KernelPipe::new(self.pipe_size).ok())
    }

    /// Returns an empty kernel pipe.
    pub fn give_pipe(&mut self, p: KernelPipe) {
        if self.pipes.len() < self.keep {
            self.pipes.push(p);
        }
    }

    /// A buffer, reused when one is free.
    pub fn take(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    /// Returns a buffer; past `keep` free buffers it is freed.
    pub fn give(&mut self, buf: Box<[u8]>) {
        if self.free.len() < self.keep {
            self.free.push(buf);
        }
    }

    /// Free buffers held.
    pub fn free(&self) -> usize {
        self.free.len()
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
    }
}
