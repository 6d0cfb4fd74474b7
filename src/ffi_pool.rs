//! The C ABI of the per-CPU memory pool, the always-usable concurrency id,
//! the registration report and the active-table swap; declared in
//! `include/restartable.h` beside the Rust forms they wrap.

use core::ffi::{c_int, c_void};

use crate::cs::Index;
use crate::percpu::pool::{Init, Layout, RawObject, READY};
use crate::PerCpuPool;

/// `RESTARTABLE_INDEX_CPU`.
const INDEX_CPU: c_int = 0;
/// `RESTARTABLE_INDEX_MM_CID`.
const INDEX_MM_CID: c_int = 1;

// The header's inline accessor compares with this value.
const _: () = assert!(READY == 2);

fn set_errno(errno: i32) {
    // SAFETY: `__errno_location` returns the calling thread's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// `restartable_pool_t`: a [`PerCpuPool`] behind a handle.
#[derive(Debug)]
pub struct CPool(PerCpuPool);

/// `restartable_pool_t *restartable_pool_new(uint32_t slots, size_t stride,
/// int index)`: a pool of `slots` slots (0: one per possible CPU) of
/// `stride` bytes (0: 64 KiB; otherwise a multiple of the page size),
/// indexed by `RESTARTABLE_INDEX_CPU` or `RESTARTABLE_INDEX_MM_CID`.
/// Returns NULL with `errno` `EINVAL` (a bad stride or index) or the
/// `mmap` errno.
#[no_mangle]
pub extern "C" fn restartable_pool_new(slots: u32, stride: usize, index: c_int) -> *mut CPool {
    let index = match index {
        INDEX_CPU => Index::Cpu,
        INDEX_MM_CID => Index::MmCid,
        _ => {
            set_errno(libc::EINVAL);
            return core::ptr::null_mut();
        }
    };
    let slots = if slots == 0 {
        crate::possible_cpus()
    } else {
        slots as usize
    };
    let stride = if stride == 0 {
        crate::percpu::pool::DEFAULT_STRIDE
    } else {
        stride
    };
    match PerCpuPool::with_layout(index, slots, stride) {
        Ok(pool) => Box::into_raw(Box::new(CPool(pool))),
        Err(e) => {
            set_errno(e.errno());
            core::ptr::null_mut()
        }
    }
}

/// `void restartable_pool_free(restartable_pool_t *pool)`: releases the
/// handle; the memory goes once every object allocated from it is freed
/// too. NULL is ignored.
///
/// # Safety
/// `pool` is NULL or comes from `restartable_pool_new`, freed once.
#[no_mangle]
pub unsafe extern "C" fn restartable_pool_free(pool: *mut CPool) {
    if !pool.is_null() {
        // SAFETY: made by `Box::into_raw` in `_new`, freed once (caller).
        drop(unsafe { Box::from_raw(pool) });
    }
}

/// `restartable_percpu_t`: one object of a pool. The fields up to `raw`
/// are part of the C ABI (the header mirrors them as `struct
/// restartable_percpu_fast`).
#[repr(C)]
pub struct CPerCpu {
    /// Instance 0.
    base: *mut u8,
    /// Bytes from one instance to the next.
    stride: usize,
    /// Number of instances.
    slots: u32,
    /// Offset in `struct rseq` of the field that indexes the slots.
    field: u32,
    /// NULL for a zeroed object; else one word per slot, `READY` (2) once
    /// the slot's instance holds its prototype (read with `Acquire`).
    states: *const usize,
    raw: RawObject,
}

impl core::fmt::Debug for CPerCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CPerCpu")
            .field("base", &self.base)
            .field("stride", &self.stride)
            .field("slots", &self.slots)
            .finish()
    }
}

/// `restartable_percpu_t *restartable_percpu_alloc(restartable_pool_t
/// *pool, size_t size, size_t align, const void *proto)`: an object of
/// `size` bytes aligned to `align` (a power of two, at most a page) with
/// one instance per slot of `pool`. With `proto` NULL every instance is
/// zero and nothing is touched; otherwise each instance is a copy of the
/// `size` bytes at `proto` (copied now), made on the first access to that
/// slot. Returns NULL with `errno` `EINVAL` (NULL pool, bad size or
/// alignment) or `ENOMEM` (no free range in the slots, or no memory).
///
/// # Safety
/// `pool` is NULL or a live pool; `proto` is NULL or readable for `size`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_alloc(
    pool: *const CPool,
    size: usize,
    align: usize,
    proto: *const c_void,
) -> *mut CPerCpu {
    // SAFETY: NULL or a live pool (caller).
    let Some(pool) = (unsafe { pool.as_ref() }) else {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    };
    let init = (!proto.is_null()).then(|| {
        // SAFETY: `proto` is readable for `size` bytes (caller).
        Init::Bytes(unsafe { core::slice::from_raw_parts(proto.cast::<u8>(), size) }.into())
    });
    match RawObject::new(&pool.0, Layout { size, align }, init) {
        Ok(raw) => Box::into_raw(Box::new(CPerCpu {
            base: raw.base(),
            stride: raw.stride(),
            slots: raw.slots() as u32,
            field: match raw.index() {
                Index::Cpu => crate::abi::CPU_ID_OFFSET as u32,
                Index::MmCid => crate::abi::MM_CID_OFFSET as u32,
            },
            states: raw.states_ptr(),
            raw,
        })),
        Err(e) => {
            set_errno(e.errno());
            core::ptr::null_mut()
        }
    }
}

/// `void restartable_percpu_free(restartable_percpu_t *p)`: frees the
/// object (every instance at once); NULL is ignored.
///
/// # Safety
/// `p` is NULL or comes from `restartable_percpu_alloc`, is freed once,
/// and no thread uses its instances any more.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_free(p: *mut CPerCpu) {
    if !p.is_null() {
        // SAFETY: made by `Box::into_raw` in `_alloc`, freed once (caller).
        drop(unsafe { Box::from_raw(p) });
    }
}

/// `void *restartable_percpu_instance_slow(restartable_percpu_t *p, int
/// slot)`: instance `slot`, copying the prototype in first if this is the
/// slot's first access; NULL for a NULL object or a slot out of range. The
/// header's inline `restartable_percpu_instance` calls it only then.
///
/// # Safety
/// `p` is NULL or a live object.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_instance_slow(
    p: *const CPerCpu,
    slot: c_int,
) -> *mut c_void {
    // SAFETY: NULL or a live object (caller).
    let Some(p) = (unsafe { p.as_ref() }) else {
        return core::ptr::null_mut();
    };
    let Ok(slot) = usize::try_from(slot) else {
        return core::ptr::null_mut();
    };
    p.raw
        .instance(slot, None)
        .map_or(core::ptr::null_mut(), |ptr| ptr.cast())
}

/// `void *restartable_percpu_instance(restartable_percpu_t *p, int slot)`:
/// the out-of-line form of the header's inline accessor.
///
/// # Safety
/// As [`restartable_percpu_instance_slow`].
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_instance(
    p: *const CPerCpu,
    slot: c_int,
) -> *mut c_void {
    // SAFETY: forwarded from the caller.
    unsafe { restartable_percpu_instance_slow(p, slot) }
}

/// `int restartable_percpu_has_value(const restartable_percpu_t *p, int
/// slot)`: 1 when instance `slot` holds a value (always, for a zeroed
/// object; once accessed, for one with a prototype), 0 otherwise or for a
/// slot out of range. Readers that sum every instance skip the others
/// (they hold the prototype's value) and touch no page.
///
/// # Safety
/// `p` is NULL or a live object.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_has_value(p: *const CPerCpu, slot: c_int) -> c_int {
    // SAFETY: NULL or a live object (caller).
    let Some(p) = (unsafe { p.as_ref() }) else {
        return 0;
    };
    match usize::try_from(slot) {
        Ok(slot) if slot < p.raw.slots() => c_int::from(p.raw.is_ready(slot)),
        _ => 0,
    }
}

/// `uint32_t restartable_percpu_slots(const restartable_percpu_t *p)`: the
/// number of instances (0 for NULL).
///
/// # Safety
/// `p` is NULL or a live object.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_slots(p: *const CPerCpu) -> u32 {
    // SAFETY: NULL or a live object (caller).
    unsafe { p.as_ref() }.map_or(0, |p| p.slots)
}

/// `int32_t restartable_percpu_current_slot(const restartable_percpu_t
/// *p)`: the slot the calling thread runs on now (its CPU, or for an
/// object indexed by concurrency id `restartable_current_mm_cid()`),
/// clamped to the last slot; -1 for NULL.
///
/// # Safety
/// `p` is NULL or a live object.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_current_slot(p: *const CPerCpu) -> i32 {
    // SAFETY: NULL or a live object (caller).
    let Some(p) = (unsafe { p.as_ref() }) else {
        return -1;
    };
    let i = match p.raw.index() {
        Index::Cpu => crate::current_cpu(),
        Index::MmCid => crate::current_mm_cid(),
    };
    i.min(p.slots - 1) as i32
}

/// `int32_t restartable_current_mm_cid(void)`: the concurrency id, or the
/// CPU number where there is none (see [`crate::current_mm_cid`]); never
/// negative.
#[no_mangle]
pub extern "C" fn restartable_current_mm_cid() -> i32 {
    crate::current_mm_cid() as i32
}

/// `int restartable_sections(void)`: a `RESTARTABLE_SECTIONS_*` value, the
/// [`Sections`](crate::Sections) discriminant: 0 when the calling thread
/// runs critical sections, otherwise why not. Registers lazily; takes no
/// hold.
#[no_mangle]
pub extern "C" fn restartable_sections() -> c_int {
    crate::sections() as c_int
}

/// `int restartable_register_sections(void)`: `restartable_register()`,
/// then `restartable_sections()`: takes one hold (release it with
/// `restartable_unregister()`) and returns a `RESTARTABLE_SECTIONS_*`
/// value, 0 when sections run; or, with no hold taken, the negative errno
/// `restartable_register()` would return.
#[no_mangle]
pub extern "C" fn restartable_register_sections() -> c_int {
    match crate::register_for_sections() {
        Ok(s) => s as c_int,
        Err(e) => e.to_errno(),
    }
}

/// The active-table functions (not in the loom build, which has no
/// `membarrier`).
#[cfg(not(restartable_loom))]
mod active_table {
    use core::ffi::c_void;

    use crate::ActiveTable;

    /// `restartable_active_table_t *restartable_active_table_new(void *table)`:
    /// an [`ActiveTable`] whose first active table is
    /// `table`; free it with `restartable_active_table_free`.
    #[no_mangle]
    pub extern "C" fn restartable_active_table_new(table: *mut c_void) -> *mut ActiveTable {
        Box::into_raw(Box::new(ActiveTable::new(table.cast())))
    }

    /// `void restartable_active_table_free(restartable_active_table_t *t)`:
    /// NULL is ignored.
    ///
    /// # Safety
    /// `t` is NULL or comes from `restartable_active_table_new`, is freed
    /// once, and no thread uses it any more.
    #[no_mangle]
    pub unsafe extern "C" fn restartable_active_table_free(t: *mut ActiveTable) {
        if !t.is_null() {
            // SAFETY: made by `Box::into_raw` in `_new`, freed once (caller).
            drop(unsafe { Box::from_raw(t) });
        }
    }

    /// `void *restartable_active_table_get(const restartable_active_table_t
    /// *t)`: the table active now (NULL for a NULL handle).
    ///
    /// # Safety
    /// `t` is NULL or a live handle.
    #[no_mangle]
    pub unsafe extern "C" fn restartable_active_table_get(t: *const ActiveTable) -> *mut c_void {
        // SAFETY: NULL or a live handle (caller).
        unsafe { t.as_ref() }.map_or(core::ptr::null_mut(), |t| t.get().cast())
    }

    /// `void restartable_active_table_add_current(restartable_active_table_t
    /// *t, intptr_t off_per_cpu, intptr_t inc)`: see
    /// [`ActiveTable::add_current`](ActiveTable::add_current). NULL is
    /// ignored.
    ///
    /// # Safety
    /// `t` is NULL or a live handle; as [`ActiveTable::add_current`].
    #[no_mangle]
    pub unsafe extern "C" fn restartable_active_table_add_current(
        t: *const ActiveTable,
        off_per_cpu: isize,
        inc: isize,
    ) {
        // SAFETY: NULL or a live handle (caller).
        if let Some(t) = unsafe { t.as_ref() } {
            // SAFETY: the tables are as the caller promises.
            unsafe { t.add_current(off_per_cpu, inc) }
        }
    }

    /// `void restartable_active_table_add(restartable_active_table_t *t,
    /// intptr_t off, intptr_t inc)`: see
    /// [`ActiveTable::add`](ActiveTable::add). NULL is ignored.
    ///
    /// # Safety
    /// `t` is NULL or a live handle; as [`ActiveTable::add`].
    #[no_mangle]
    pub unsafe extern "C" fn restartable_active_table_add(
        t: *const ActiveTable,
        off: isize,
        inc: isize,
    ) {
        // SAFETY: NULL or a live handle (caller).
        if let Some(t) = unsafe { t.as_ref() } {
            // SAFETY: the tables are as the caller promises.
            unsafe { t.add(off, inc) }
        }
    }

    /// `void *restartable_active_table_swap(restartable_active_table_t *t,
    /// void *table)`: makes `table` active and returns the table that was,
    /// which no update reaches any more (see
    /// [`ActiveTable::swap`](ActiveTable::swap)); NULL for a NULL
    /// handle.
    ///
    /// # Safety
    /// `t` is NULL or a live handle.
    #[no_mangle]
    pub unsafe extern "C" fn restartable_active_table_swap(
        t: *const ActiveTable,
        table: *mut c_void,
    ) -> *mut c_void {
        // SAFETY: NULL or a live handle (caller).
        unsafe { t.as_ref() }.map_or(core::ptr::null_mut(), |t| t.swap(table.cast()).cast())
    }
}
