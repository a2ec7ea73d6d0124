//! [`Limiter`]: the memory cap of one plugin instance, counted across its whole `Store`.
//!
//! wasmtime's stock `StoreLimits` caps each linear memory on its own and allows 10,000
//! memories, tables and instances per store, so a hand-made component with many memories
//! (or a huge table, whose elements live in host memory) could take many times the node's
//! `limits.memory`. This limiter instead adds every memory's and table's growth into one
//! total and refuses the growth that would pass the cap, and bounds how many memories,
//! tables and core instances a store may create at all.
//!
//! It does not account the host's own allocations made on a plugin's behalf (the batch's
//! undo log, resolved paths, counters): those have their own bounds in `batch.rs` and
//! `services.rs`.

/// Most linear memories one instance may create. A Rust plugin has one; the component
/// model's adapters may add one or two.
pub const MAX_MEMORIES: usize = 8;
/// Most tables one instance may create.
pub const MAX_TABLES: usize = 32;
/// Most core instances one component may create (a Rust plugin has about ten).
pub const MAX_INSTANCES: usize = 64;
/// Most table elements, summed over every table of the store. Table elements live in
/// host memory (16 bytes or so each), not in the plugin's linear memory.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// What one table element is charged against the memory cap, in bytes.
const TABLE_ELEMENT_BYTES: usize = 16;

/// The store-wide memory cap, remembering whether it refused anything, so a trap that
/// follows is classified by its cause rather than by wasmtime's error text.
#[derive(Debug)]
pub struct Limiter {
    cap: usize,
    /// Bytes of linear memory granted so far, every memory of the store together.
    memory_bytes: usize,
    /// Table elements granted so far, every table of the store together.
    table_elements: usize,
    /// Whether a growth was refused.
    pub refused: bool,
}

impl Limiter {
    /// A limiter letting the store's memories and tables together grow to `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Limiter { cap, memory_bytes: 0, table_elements: 0, refused: false }
    }

    /// Bytes granted so far (memories plus tables' elements at their charge).
    pub fn granted(&self) -> usize {
        self.memory_bytes.saturating_add(self.table_elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn refuse(&mut self, what: &str) -> wasmtime::Result<bool> {
        self.refused = true;
        // An error (rather than `Ok(false)`) traps at once, instead of leaving the guest's
        // allocator to decide what a failed `memory.grow` means.
        Err(wasmtime::format_err!("{what} would pass the plugin's memory cap of {} bytes", self.cap))
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let added = desired.saturating_sub(current);
        if self.granted().saturating_add(added) > self.cap {
            return self.refuse("growing a memory");
        }
        self.memory_bytes += added;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let added = desired.saturating_sub(current);
        let elements = self.table_elements.saturating_add(added);
        if elements > MAX_TABLE_ELEMENTS
            || self.granted().saturating_add(added.saturating_mul(TABLE_ELEMENT_BYTES)) > self.cap
        {
            return self.refuse("growing a table");
        }
        self.table_elements = elements;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    const PAGE: usize = 64 << 10;

    #[test]
    fn the_cap_is_the_sum_of_every_memory() {
        // Four memories of 3 pages each under a cap of 10 pages: the fourth is refused,
        // though each alone is far under the cap.
        let mut l = Limiter::new(10 * PAGE);
        for _ in 0..3 {
            assert!(l.memory_growing(0, 3 * PAGE, None).unwrap());
        }
        assert!(l.memory_growing(0, 3 * PAGE, None).is_err());
        assert!(l.refused);
        assert_eq!(l.granted(), 9 * PAGE);
    }

    #[test]
    fn growth_counts_only_what_is_added() {
        let mut l = Limiter::new(4 * PAGE);
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        assert!(l.memory_growing(PAGE, 3 * PAGE, None).unwrap());
        assert!(l.memory_growing(3 * PAGE, 5 * PAGE, None).is_err());
        assert!(!l.memory_growing(3 * PAGE, 4 * PAGE, Some(3 * PAGE)).unwrap(), "over the memory's own maximum");
    }

    #[test]
    fn table_elements_are_bounded_and_charged() {
        let mut l = Limiter::new(usize::MAX);
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS, None).unwrap());
        assert!(l.table_growing(0, 1, None).is_err(), "a second table past the element bound");

        let mut l = Limiter::new(PAGE);
        assert!(l.table_growing(0, PAGE / TABLE_ELEMENT_BYTES + 1, None).is_err(), "elements count against memory");
    }

    /// A core module declaring `memories` linear memories of `pages` pages each, as bytes
    /// (hand-encoded: the binary format of a memory section is a few bytes).
    fn module_with_memories(memories: u8, pages: u32) -> Vec<u8> {
        let mut leb = Vec::new();
        let mut v = pages;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                leb.push(byte);
                break;
            }
            leb.push(byte | 0x80);
        }
        let mut section = vec![memories];
        for _ in 0..memories {
            section.push(0x00); // limits: a minimum, no maximum
            section.extend_from_slice(&leb);
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.push(0x05); // the memory section
        module.push(section.len() as u8);
        module.extend(section);
        module
    }

    fn store(cap: usize) -> (wasmtime::Engine, wasmtime::Store<Limiter>) {
        let engine = wasmtime::Engine::default();
        let mut store = wasmtime::Store::new(&engine, Limiter::new(cap));
        store.limiter(|l: &mut Limiter| -> &mut dyn ResourceLimiter { l });
        (engine, store)
    }

    #[test]
    fn a_real_store_cannot_pass_the_cap_with_many_instances() {
        // Four instances with a 19 MiB memory each, in one store capped at 64 MiB: each is
        // far under the cap (which is all a per-memory limit would check); the fourth is
        // refused.
        let (engine, mut store) = store(64 << 20);
        let module = wasmtime::Module::new(&engine, module_with_memories(1, 300)).expect("a valid module");
        for i in 0..3 {
            wasmtime::Instance::new(&mut store, &module, &[]).unwrap_or_else(|e| panic!("instance {i}: {e:#}"));
        }
        assert!(wasmtime::Instance::new(&mut store, &module, &[]).is_err());
        assert!(store.data().refused);
        assert!(store.data().granted() <= 64 << 20);
    }

    #[test]
    fn a_real_store_cannot_pass_the_cap_with_many_memories() {
        // One module with four 19 MiB memories (multi-memory): refused as a whole.
        let (engine, mut capped) = store(64 << 20);
        let module = wasmtime::Module::new(&engine, module_with_memories(4, 300)).expect("a valid module");
        assert!(wasmtime::Instance::new(&mut capped, &module, &[]).is_err());
        assert!(capped.data().refused);

        // And more memories than MAX_MEMORIES, however small, are refused by count.
        let (engine, mut unbounded) = store(usize::MAX);
        let module = wasmtime::Module::new(&engine, module_with_memories(MAX_MEMORIES as u8 + 1, 1)).unwrap();
        assert!(wasmtime::Instance::new(&mut unbounded, &module, &[]).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        let l = Limiter::new(PAGE);
        assert_eq!((l.memories(), l.tables(), l.instances()), (MAX_MEMORIES, MAX_TABLES, MAX_INSTANCES));
    }
}
