//! Sorting more items than memory should hold. Items are sorted in runs of bounded size; once
//! there is more than one run, each sorted run goes to an unlinked temporary file and the runs
//! are merged as the result is read. Memory is the run budget plus a read buffer per merged
//! run, whatever the number of items; a folder of 5,000 messages never touches the disk.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes of items a sort holds in memory before it writes a run (`MAILMOVER_SORT_MEMORY`
/// overrides it: more for speed on huge folders, less to bound memory harder).
pub const RUN_BUDGET: usize = 4 << 20;

/// The run budget of this process: [`RUN_BUDGET`] or `MAILMOVER_SORT_MEMORY` (bytes).
pub fn run_budget() -> usize {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("MAILMOVER_SORT_MEMORY").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(RUN_BUDGET)
    })
}
/// Runs merged at once; more are first merged into longer runs.
const FAN_IN: usize = 32;
const READ_BUF: usize = 64 << 10;

/// An item that can be sorted on disk: written as bytes and read back the same.
pub trait Spill: Ord + Clone + Sized {
    /// About the bytes it holds in memory, heap included (for the run budget).
    fn weight(&self) -> usize;
    fn write(&self, out: &mut Vec<u8>);
    /// The item [`Spill::write`] wrote, from exactly its bytes.
    fn read(bytes: &[u8]) -> Option<Self>;
}

/// Orders a type by some of its fields (a key and a tie-break), the rest its payload: equal
/// keys mean the same item wherever it is sorted.
#[macro_export]
macro_rules! ordered_by {
    ($t:ty, $($f:ident),+) => {
        impl PartialEq for $t {
            fn eq(&self, o: &Self) -> bool {
                ($(&self.$f,)+) == ($(&o.$f,)+)
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for $t {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                ($(&self.$f,)+).cmp(&($(&o.$f,)+))
            }
        }
    };
}

/// Items being gathered for sorting.
pub struct Sorter<T> {
    tail: Vec<T>,
    weight: usize,
    budget: usize,
    runs: Option<Runs>,
    len: u64,
}

struct Runs {
    file: File,
    /// Byte ranges of the sorted runs.
    ranges: Vec<(u64, u64)>,
    end: u64,
}

impl<T: Spill> Default for Sorter<T> {
    fn default() -> Self {
        Sorter::with_budget(run_budget())
    }
}

impl<T: Spill> Sorter<T> {
    pub fn new() -> Sorter<T> {
        Sorter::default()
    }

    /// A sorter that spills a run whenever its items weigh `budget` bytes (tests use tiny ones).
    pub fn with_budget(budget: usize) -> Sorter<T> {
        Sorter { tail: Vec::new(), weight: 0, budget: budget.max(1), runs: None, len: 0 }
    }

    pub fn push(&mut self, item: T) -> std::io::Result<()> {
        self.weight += item.weight() + std::mem::size_of::<T>();
        self.tail.push(item);
        self.len += 1;
        if self.weight >= self.budget {
            self.spill_tail()?;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes a run may hold.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether some items went to disk.
    pub fn spilled(&self) -> bool {
        self.runs.is_some()
    }

    fn spill_tail(&mut self) -> std::io::Result<()> {
        self.tail.sort_unstable();
        if self.runs.is_none() {
            self.runs = Some(Runs { file: tempfile::tempfile()?, ranges: Vec::new(), end: 0 });
        }
        let Some(runs) = self.runs.as_mut() else { return Ok(()) };
        let range = write_run(&runs.file, &mut runs.end, self.tail.drain(..).map(Ok))?;
        runs.ranges.push(range);
        self.tail = Vec::new();
        self.weight = 0;
        Ok(())
    }

    /// The items in order, to be read as many times as needed.
    pub fn sorted(mut self) -> std::io::Result<Sorted<T>> {
        // Once some runs are on disk the last one goes there too: a sorted result being read
        // holds only a read buffer per run, not a run's worth of items for as long as it lives.
        if self.runs.is_some() && !self.tail.is_empty() {
            self.spill_tail()?;
        }
        self.tail.sort_unstable();
        if let Some(runs) = self.runs.as_mut() {
            // Few enough runs that each gets its read buffer.
            while runs.ranges.len() >= FAN_IN {
                let group: Vec<(u64, u64)> = runs.ranges.drain(..FAN_IN).collect();
                let range = write_run(&runs.file, &mut runs.end, Merge::<T>::over(&runs.file, &group, &[]))?;
                runs.ranges.push(range);
            }
        }
        Ok(Sorted { tail: self.tail, runs: self.runs, len: self.len })
    }
}

/// Writes sorted items as one more run at `end` of the file; returns its byte range.
fn write_run<T: Spill>(
    file: &File,
    end: &mut u64,
    items: impl Iterator<Item = std::io::Result<T>>,
) -> std::io::Result<(u64, u64)> {
    let start = *end;
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut item_bytes = Vec::with_capacity(256);
    for item in items {
        item_bytes.clear();
        item?.write(&mut item_bytes);
        let len = u32::try_from(item_bytes.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "item too large to sort"))?;
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&item_bytes);
        if buf.len() >= READ_BUF {
            file.write_all_at(&buf, *end)?;
            *end += buf.len() as u64;
            buf.clear();
        }
    }
    file.write_all_at(&buf, *end)?;
    *end += buf.len() as u64;
    Ok((start, *end))
}

/// Sorted items: the last run in memory, the others on disk.
pub struct Sorted<T> {
    tail: Vec<T>,
    runs: Option<Runs>,
    len: u64,
}

impl Spill for u64 {
    fn weight(&self) -> usize {
        0
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }

    fn read(b: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}

impl<T> Default for Sorted<T> {
    /// No items.
    fn default() -> Self {
        Sorted { tail: Vec::new(), runs: None, len: 0 }
    }
}

impl<T: Spill> Sorted<T> {
    /// The items in order. A run that cannot be read back yields its error and ends there.
    pub fn iter(&self) -> Merge<'_, T> {
        match &self.runs {
            Some(r) => Merge::over(&r.file, &r.ranges, &self.tail),
            None => Merge::over_memory(&self.tail),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct RunReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader<'_> {
    /// Makes at least `n` unread bytes available, unless the run ends first.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        if self.buf.len() - self.at >= n {
            return Ok(true);
        }
        self.buf.drain(..self.at);
        self.at = 0;
        while self.buf.len() < n && self.pos < self.end {
            let want = (self.end - self.pos).min(READ_BUF.max(n) as u64) as usize;
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = self.file.read_at(&mut self.buf[old..], self.pos)?;
            self.buf.truncate(old + got);
            if got == 0 {
                return Err(ended_early());
            }
            self.pos += got as u64;
        }
        Ok(self.buf.len() >= n)
    }

    fn next<T: Spill>(&mut self) -> std::io::Result<Option<T>> {
        if !self.fill(4)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(<[u8; 4]>::try_from(&self.buf[self.at..self.at + 4]).unwrap_or_default());
        let len = len as usize;
        if !self.fill(4 + len)? {
            return Err(ended_early());
        }
        let item = T::read(&self.buf[self.at + 4..self.at + 4 + len])
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "a sorted run does not read back"))?;
        self.at += 4 + len;
        Ok(Some(item))
    }
}

fn ended_early() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a sorted run ended early")
}

enum Source<'a, T> {
    Run(RunReader<'a>),
    Mem(std::slice::Iter<'a, T>),
}

/// Sorted items as they are merged from their runs.
pub struct Merge<'a, T> {
    sources: Vec<Source<'a, T>>,
    /// Ties go to the earlier source, so equal items keep the order they were pushed in runs.
    heap: BinaryHeap<Reverse<(T, usize)>>,
    failed: Option<std::io::Error>,
}

impl<'a, T: Spill> Merge<'a, T> {
    fn over(file: &'a File, ranges: &[(u64, u64)], tail: &'a [T]) -> Merge<'a, T> {
        let mut sources: Vec<Source<'a, T>> = ranges
            .iter()
            .map(|&(pos, end)| Source::Run(RunReader { file, pos, end, buf: Vec::new(), at: 0 }))
            .collect();
        sources.push(Source::Mem(tail.iter()));
        Merge::start(sources)
    }

    fn over_memory(tail: &'a [T]) -> Merge<'a, T> {
        Merge::start(vec![Source::Mem(tail.iter())])
    }

    fn start(sources: Vec<Source<'a, T>>) -> Merge<'a, T> {
        let mut m = Merge { sources, heap: BinaryHeap::new(), failed: None };
        for i in 0..m.sources.len() {
            m.refill(i);
        }
        m
    }

    fn refill(&mut self, i: usize) {
        let next = match &mut self.sources[i] {
            Source::Mem(it) => it.next().cloned(),
            Source::Run(r) => match r.next() {
                Ok(t) => t,
                Err(e) => {
                    self.failed.get_or_insert(e);
                    None
                }
            },
        };
        if let Some(t) = next {
            self.heap.push(Reverse((t, i)));
        }
    }
}

impl<T: Spill> Iterator for Merge<'_, T> {
    type Item = std::io::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            // Nothing after a failed run is trusted to be in order.
            self.heap.clear();
            return Some(Err(e));
        }
        let Reverse((t, i)) = self.heap.pop()?;
        self.refill(i);
        Some(Ok(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Item(u32, Vec<u8>);

    impl Spill for Item {
        fn weight(&self) -> usize {
            self.1.len()
        }
        fn write(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
            out.extend_from_slice(&self.1);
        }
        fn read(b: &[u8]) -> Option<Item> {
            let (k, v) = b.split_at_checked(4)?;
            Some(Item(u32::from_le_bytes(k.try_into().ok()?), v.to_vec()))
        }
    }

    proptest! {
        /// Whatever the budget (one item a run, a few, all), the result is the items sorted,
        /// every time it is read.
        #[test]
        fn sorts_like_memory(items in proptest::collection::vec((0u32..50, proptest::collection::vec(any::<u8>(), 0..20)), 0..400), budget in 1usize..2000) {
            let mut s = Sorter::with_budget(budget);
            for (k, v) in &items {
                s.push(Item(*k, v.clone())).unwrap();
            }
            let mut want: Vec<Item> = items.iter().map(|(k, v)| Item(*k, v.clone())).collect();
            want.sort();
            let sorted = s.sorted().unwrap();
            prop_assert_eq!(sorted.len(), want.len() as u64);
            for _ in 0..2 {
                let got: Vec<Item> = sorted.iter().map(Result::unwrap).collect();
                prop_assert_eq!(&got, &want);
            }
        }
    }

    #[test]
    fn many_runs_are_merged_in_steps() {
        let mut s = Sorter::with_budget(1);
        let n = FAN_IN as u32 * FAN_IN as u32 + 7;
        for i in (0..n).rev() {
            s.push(Item(i, vec![1])).unwrap();
        }
        assert!(s.spilled());
        let sorted = s.sorted().unwrap();
        assert!(sorted.runs.as_ref().is_some_and(|r| r.ranges.len() < FAN_IN));
        let got: Vec<u32> = sorted.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn small_sets_stay_in_memory() {
        let mut s = Sorter::with_budget(RUN_BUDGET);
        for i in 0..1000 {
            s.push(Item(i, vec![0; 10])).unwrap();
        }
        assert!(!s.spilled());
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_short_list() {
        let mut s = Sorter::with_budget(1);
        for i in 0..10 {
            s.push(Item(i, vec![2; 3])).unwrap();
        }
        let sorted = s.sorted().unwrap();
        if let Some(r) = &sorted.runs {
            r.file.set_len(r.end / 2).unwrap();
        }
        assert!(sorted.iter().any(|r| r.is_err()));
    }
}
