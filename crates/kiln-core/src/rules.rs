//! The boxes of backward rules, reused.
//!
//! Every recorded op boxes its backward rule (a closure over what the rule
//! saved), and a training step records the same ops with the same closure
//! types step after step. A box whose rule has run (or whose node is freed)
//! drops the closure in place and keeps its memory on a per-thread list of
//! its size and alignment; the next rule of that layout is written into it.
//! A step's rules then cost no allocation once the first step has run.
//!
//! The memory is handed from one closure type to another of the same size
//! and alignment: what `Box` needs to free it is only that layout, so a box
//! rebuilt over it frees it as its first owner would have.

use crate::autograd::{BackwardCtx, BackwardFn, InputGrads};
use crate::{Result, Tensor};
use std::alloc::{dealloc, Layout};
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// Blocks kept per layout.
const MAX_BLOCKS: usize = 1024;
/// Layouts kept per thread (a program's rules come in a few dozen sizes).
const MAX_LAYOUTS: usize = 32;

/// Free blocks of one layout: allocated by the global allocator with it,
/// holding no value.
struct Blocks {
    layout: Layout,
    free: Vec<NonNull<u8>>,
}

/// This thread's free blocks, by layout.
#[derive(Default)]
struct Cache(Vec<Blocks>);

impl Drop for Cache {
    fn drop(&mut self) {
        for class in &self.0 {
            for block in &class.free {
                // SAFETY: each block was allocated with `class.layout` and is
                // owned by this list alone.
                unsafe { dealloc(block.as_ptr(), class.layout) };
            }
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// A kept block of `layout`, if this thread has one.
fn take_block(layout: Layout) -> Option<NonNull<u8>> {
    CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            c.0.iter_mut().find(|b| b.layout == layout)?.free.pop()
        })
        .ok()
        .flatten()
}

/// Keeps the empty block `ptr` of `layout`, or frees it when the list for
/// its layout is full, when there are too many layouts, or during thread
/// exit.
///
/// # Safety
/// `ptr` was allocated by the global allocator with `layout` (nonzero size),
/// holds no value, and is not used by the caller afterwards.
unsafe fn keep_block(ptr: NonNull<u8>, layout: Layout) {
    let kept = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let at = match c.0.iter().position(|b| b.layout == layout) {
                Some(at) => at,
                None if c.0.len() < MAX_LAYOUTS => {
                    c.0.push(Blocks {
                        layout,
                        free: Vec::new(),
                    });
                    c.0.len() - 1
                }
                None => return false,
            };
            let free = &mut c.0[at].free;
            if free.len() >= MAX_BLOCKS {
                return false;
            }
            free.push(ptr);
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: the caller's contract.
        unsafe { dealloc(ptr.as_ptr(), layout) };
    }
}

/// A node's backward rule: a boxed closure whose box goes back to this
/// thread's blocks when the rule is dropped.
pub(crate) struct Rule(ManuallyDrop<BackwardFn>);

impl Rule {
    /// Boxes `f`, in a kept block of its layout when there is one.
    pub(crate) fn new<F>(f: F) -> Rule
    where
        F: Fn(&BackwardCtx, &Tensor) -> Result<InputGrads> + Send + Sync + 'static,
    {
        let layout = Layout::new::<F>();
        let boxed: BackwardFn = match (layout.size() > 0).then(|| take_block(layout)).flatten() {
            Some(block) => {
                let p = block.as_ptr().cast::<F>();
                // SAFETY: the block was allocated with F's layout and holds
                // nothing; once `f` is written there it is what `Box::new(f)`
                // would have made, and the box frees it with that layout.
                unsafe {
                    p.write(f);
                    Box::from_raw(p)
                }
            }
            None => Box::new(f),
        };
        Rule(ManuallyDrop::new(boxed))
    }
}

impl std::ops::Deref for Rule {
    type Target = BackwardFn;
    fn deref(&self) -> &BackwardFn {
        &self.0
    }
}

impl Drop for Rule {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used again.
        let boxed = unsafe { ManuallyDrop::take(&mut self.0) };
        let layout = Layout::for_value(&*boxed);
        if layout.size() == 0 {
            return;
        }
        let raw = Box::into_raw(boxed);
        /// Frees the block if the closure's drop panics: it is then in an
        /// unknown state, and is not kept.
        struct FreeOnUnwind(NonNull<u8>, Layout);
        impl Drop for FreeOnUnwind {
            fn drop(&mut self) {
                // SAFETY: the block came from the box, with this layout.
                unsafe { dealloc(self.0.as_ptr(), self.1) };
            }
        }
        let block = NonNull::new(raw.cast::<u8>()).expect("a box is never null");
        let guard = FreeOnUnwind(block, layout);
        // SAFETY: `raw` came from `Box::into_raw` and holds a live closure,
        // dropped here once; the memory stays allocated (the guard or the
        // list owns it from here).
        unsafe { std::ptr::drop_in_place(raw) };
        std::mem::forget(guard);
        // SAFETY: allocated by the box with `layout` (nonzero), now empty.
        unsafe { keep_block(block, layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(layout: Layout) -> usize {
        CACHE.with(|c| {
            c.borrow()
                .0
                .iter()
                .find(|b| b.layout == layout)
                .map_or(0, |b| b.free.len())
        })
    }

    #[test]
    fn a_dropped_rule_keeps_its_block_for_the_next_of_its_layout() {
        // Runs on a test thread of its own: the cache starts empty.
        std::thread::spawn(|| {
            let saved = [1.0f64, 2.0, 3.0];
            let layout = Layout::new::<[f64; 3]>();
            let first = Rule::new(move |_: &BackwardCtx, _: &Tensor| Ok(InputGrads::from_elem(None, saved.len())));
            let addr = (&**first as *const _ as *const u8) as usize;
            assert_eq!(kept(layout), 0);
            drop(first);
            assert_eq!(kept(layout), 1, "the block is kept");
            // Another closure type of the same layout gets the same block.
            let other = [4u64, 5, 6];
            let second = Rule::new(move |_: &BackwardCtx, _: &Tensor| Ok(InputGrads::from_elem(None, other.len() + 1)));
            assert_eq!((&**second as *const _ as *const u8) as usize, addr);
            assert_eq!(kept(layout), 0);
            drop(second);
            // A closure capturing nothing has no block.
            let empty = Rule::new(|_: &BackwardCtx, _: &Tensor| Ok(InputGrads::new()));
            drop(empty);
            assert_eq!(kept(Layout::new::<()>()), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_rule_drops_what_it_captured() {
        let held = std::sync::Arc::new(());
        let copy = held.clone();
        let rule = Rule::new(move |_: &BackwardCtx, _: &Tensor| {
            let _ = &copy;
            Ok(InputGrads::new())
        });
        assert_eq!(std::sync::Arc::strong_count(&held), 2);
        drop(rule);
        assert_eq!(std::sync::Arc::strong_count(&held), 1);
    }
}
