//! Reverse-mode autograd: the graph, the engine that walks it, grad mode,
//! saved tensors with version checks, hooks, anomaly mode, custom functions
//! and DOT export.
//!
//! Every recorded op creates one [`Node`]: its name, the source location of
//! the forward call, an edge per input (to the input's node, or to the leaf
//! itself), and a backward closure that maps the output's gradient to the
//! inputs' gradients. The closure is written with `Tensor` ops, so when the
//! engine runs it with grad mode on (`create_graph`) the backward pass is
//! itself recorded and can be differentiated again.

use crate::rules::Rule;
use crate::shape::{same_dims, Dims};
use crate::storage::UsizeHasher;
use crate::storage::{keep, reuse, ShellList};
use crate::tensor::Inner;
use crate::{Error, Result, Tensor};
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Map keyed by node address.
type NodeMap<V> = HashMap<usize, V, BuildHasherDefault<UsizeHasher>>;

/// A gradient hook: sees the gradient, may return a replacement.
pub type Hook = Arc<dyn Fn(&Tensor) -> Option<Tensor> + Send + Sync>;

/// The gradients a backward rule returns, one per input (`None`: no
/// gradient); up to three inline, as most ops have at most three inputs.
pub type InputGrads = SmallVec<[Option<Tensor>; 3]>;

/// The backward rule of one node: (context, dL/d output) → dL/d input per input.
pub type BackwardFn = Box<dyn Fn(&BackwardCtx, &Tensor) -> Result<InputGrads> + Send + Sync>;

/// Where the gradient of one input goes.
pub(crate) enum Edge {
    /// The input was produced by another recorded op.
    Node(Arc<Node>),
    /// The input is a leaf that requires grad: accumulate into its `.grad`.
    Leaf(Arc<Inner>),
}

/// One recorded op.
pub struct Node {
    /// Op name, as shown in errors and DOT output.
    pub op: &'static str,
    /// Source location of the forward call (`#[track_caller]`).
    pub location: &'static Location<'static>,
    /// Creation order; the engine runs later nodes first.
    pub(crate) seq: u64,
    pub(crate) inputs: SmallVec<[Option<Edge>; 3]>,
    /// Taken (freed with its saved tensors) after a backward without retain_graph.
    pub(crate) backward: Mutex<Option<Rule>>,
    /// The op's output data (detached), when the backward rule needs it.
    pub(crate) saved_output: Mutex<Option<(Tensor, u64)>>,
    pub(crate) out_shape: Dims,
    pub(crate) retain: AtomicBool,
    pub(crate) retained_grad: Mutex<Option<Tensor>>,
    pub(crate) hooks: Mutex<Vec<Hook>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for edge in self.inputs.drain(..) {
            if let Some(Edge::Node(parent)) = edge {
                drop_node(parent);
            }
        }
    }
}

thread_local! {
    /// Whether a [`drop_node`] is taking a graph down on this thread.
    static DROPPING: Cell<bool> = const { Cell::new(false) };
    /// The nodes it has still to drop.
    static DROP_LIST: std::cell::RefCell<Vec<Arc<Node>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Drops a node without recursion. Dropping the last handle on a node drops
/// its inputs' nodes and its saved tensors, whose nodes drop theirs, and so
/// on: one stack frame per op of a chain, so a long enough graph overflowed
/// the stack. Inside such a drop, a node that would be freed goes on a list
/// instead, which the outermost drop on this thread empties: the stack stays
/// flat however deep the graph. A node still shared only loses a count.
pub(crate) fn drop_node(node: Arc<Node>) {
    if Arc::strong_count(&node) > 1 {
        return;
    }
    // During thread exit the list may be gone: the node then drops here.
    let Ok(outer) = DROPPING.try_with(|d| !d.replace(true)) else {
        return;
    };
    if !outer {
        let _ = DROP_LIST.try_with(|l| l.borrow_mut().push(node));
        return;
    }
    /// Ends the outermost drop, also when a drop in the graph panics (what
    /// is left on the list then goes with the next graph).
    struct Outermost;
    impl Drop for Outermost {
        fn drop(&mut self) {
            let _ = DROPPING.try_with(|d| d.set(false));
        }
    }
    let _outermost = Outermost;
    retire(node);
    while let Some(next) = DROP_LIST.try_with(|l| l.borrow_mut().pop()).ok().flatten() {
        retire(next);
    }
}

thread_local! {
    /// Emptied nodes, kept for the next recorded ops ([`attach_node`]).
    static NODE_SHELLS: ShellList<Arc<Node>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Frees what a node nothing else holds refers to, and keeps the emptied
/// node for a later op: a training step records the same ops each step, so
/// its nodes then cost no allocation. Everything is moved out before the
/// node is kept and dropped after, so a drop that panics (a value a hook
/// captured) leaves a whole node on the list. A node with a poisoned lock
/// (a panic while it was held) is freed instead.
fn retire(mut node: Arc<Node>) {
    let Some(n) = Arc::get_mut(&mut node) else {
        return;
    };
    let (Ok(rule), Ok(saved), Ok(retained), Ok(hooks)) = (
        n.backward.get_mut(),
        n.saved_output.get_mut(),
        n.retained_grad.get_mut(),
        n.hooks.get_mut(),
    ) else {
        return;
    };
    let held = (rule.take(), saved.take(), retained.take(), std::mem::take(hooks));
    let inputs = std::mem::take(&mut n.inputs);
    keep(&NODE_SHELLS, node);
    drop(held);
    for edge in inputs {
        if let Some(Edge::Node(parent)) = edge {
            drop_node(parent);
        }
    }
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static ANOMALY: Cell<bool> = const { Cell::new(false) };
}

/// Whether ops record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Turns graph recording off until dropped (restores the previous mode).
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    /// Disables grad mode on this thread.
    pub fn new() -> Self {
        Self::set(false)
    }
    pub(crate) fn set(on: bool) -> Self {
        let prev = GRAD_ENABLED.with(|g| g.replace(on));
        NoGradGuard { prev }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Runs `f` with graph recording off.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Anomaly mode: every backward output is checked for NaN/Inf, and an error
/// names the op and the source location of its forward call.
pub fn set_anomaly_enabled(on: bool) {
    ANOMALY.with(|a| a.set(on));
}

/// Whether anomaly mode is on for this thread.
pub fn is_anomaly_enabled() -> bool {
    ANOMALY.with(|a| a.get())
}

/// A tensor saved for backward with the version it had when saved.
pub struct SavedTensor {
    tensor: Tensor,
    version: u64,
}

impl SavedTensor {
    /// Saves `t` (shares its data; remembers the current version).
    pub fn new(t: &Tensor) -> Self {
        SavedTensor {
            tensor: t.clone(),
            version: t.version(),
        }
    }
}

/// What a backward rule can ask of the engine.
pub struct BackwardCtx<'a> {
    node: &'a Arc<Node>,
    /// True when the backward pass is being recorded (higher-order grads).
    pub create_graph: bool,
    /// Per input: whether this backward pass wants its gradient (None: all).
    needs: Option<&'a [bool]>,
    /// Which leaves' `.grad` this pass adds to.
    leaf_grads: LeafGrads<'a>,
    anomaly: bool,
}

/// Which leaves' `.grad` a backward pass adds to (see [`Sink`]).
#[derive(Clone, Copy)]
enum LeafGrads<'a> {
    All,
    Only(&'a [Tensor]),
    /// `grad()`: gradients are captured, no `.grad` is touched.
    None,
}

impl BackwardCtx<'_> {
    /// Whether the gradient of input `i` is wanted by this backward pass.
    ///
    /// False for an input that does not require grad, and, when the pass
    /// was asked for the gradients of some tensors only
    /// ([`Tensor::backward_to`], [`grad`]), for an input from which none of
    /// them can be reached. Rules may skip computing such gradients (linear
    /// and matmul skip their GEMMs); the engine drops them either way.
    pub fn needs_input_grad(&self, i: usize) -> bool {
        matches!(self.node.inputs.get(i), Some(Some(_)))
            && self.needs.is_none_or(|m| m.get(i).copied().unwrap_or(false))
    }

    /// Lets a rule add its gradient for input `i` straight into that
    /// leaf's existing `.grad` instead of returning a fresh tensor for the
    /// engine to add: `f` gets the gradient held so far and must add this
    /// rule's contribution to it in place (a weight-gradient GEMM with
    /// beta = 1, for instance). Returns whether `f` ran; when it did, the rule
    /// returns `None` for input `i`.
    ///
    /// Only when the engine would add in place anyway: input `i` is a leaf
    /// whose `.grad` this pass accumulates into, that `.grad` is an unshared
    /// dense CPU tensor nobody else holds, no hook is registered on the leaf
    /// (a hook must see the incoming gradient alone), and neither
    /// create_graph nor anomaly mode is on (anomaly mode checks each
    /// incoming gradient). `f` runs with the leaf's gradient slot locked.
    pub fn accumulate_into_grad(&self, i: usize, f: impl FnOnce(&Tensor) -> Result<()>) -> Result<bool> {
        let Some(Some(Edge::Leaf(inner))) = self.node.inputs.get(i) else {
            return Ok(false);
        };
        let wanted = match self.leaf_grads {
            LeafGrads::All => true,
            LeafGrads::Only(t) => t.iter().any(|t| Arc::ptr_eq(&t.0, inner)),
            LeafGrads::None => false,
        };
        if !wanted || self.create_graph || self.anomaly || !self.needs_input_grad(i) {
            return Ok(false);
        }
        if !inner.hooks.lock().unwrap().is_empty() {
            return Ok(false);
        }
        let slot = inner.grad.lock().unwrap();
        match slot.as_ref() {
            Some(held)
                if held.is_exclusive_cpu() && held.shape() == inner.shape.as_slice() && held.dtype() == inner.dtype =>
            {
                f(held)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Unpacks a saved input, failing if it was modified in place since.
    pub fn unpack(&self, saved: &SavedTensor) -> Result<Tensor> {
        let now = saved.tensor.version();
        if now != saved.version {
            return Err(self.inplace_error(saved.version, now));
        }
        Ok(saved.tensor.clone())
    }

    /// The op's own output, re-attached to this node so that second-order
    /// gradients flow through it.
    pub fn output(&self) -> Result<Tensor> {
        let guard = self.node.saved_output.lock().unwrap();
        let (data, version) = guard
            .as_ref()
            .ok_or_else(|| Error::Autograd(format!("{}: the saved output was already freed", self.node.op)))?;
        let now = data.version();
        if now != *version {
            return Err(self.inplace_error(*version, now));
        }
        Ok(if self.create_graph {
            data.with_grad_fn(Some(self.node.clone()), true)
        } else {
            data.clone()
        })
    }

    fn inplace_error(&self, saved: u64, now: u64) -> Error {
        Error::InplaceModified {
            op: self.node.op,
            location: self.node.location.to_string(),
            saved,
            now,
        }
    }
}

/// Records an op: returns `out` attached to a new node when grad mode is on
/// and any input requires grad; otherwise `out` unchanged.
#[track_caller]
pub(crate) fn record(
    op: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl Fn(&BackwardCtx, &Tensor) -> Result<InputGrads> + Send + Sync + 'static,
) -> Tensor {
    record_impl(op, out, inputs, false, backward)
}

/// Like [`record`], and also saves the output for the backward rule
/// (retrieved with [`BackwardCtx::output`]).
#[track_caller]
pub(crate) fn record_with_output(
    op: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl Fn(&BackwardCtx, &Tensor) -> Result<InputGrads> + Send + Sync + 'static,
) -> Tensor {
    record_impl(op, out, inputs, true, backward)
}

#[track_caller]
fn record_impl(
    op: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    save_output: bool,
    backward: impl Fn(&BackwardCtx, &Tensor) -> Result<InputGrads> + Send + Sync + 'static,
) -> Tensor {
    // Checked before boxing the rule: under no_grad (every op a backward
    // rule runs, unless create_graph) the box was an allocation and a free
    // per op for nothing.
    if !is_grad_enabled() || !inputs.iter().any(|t| t.0.requires_grad) {
        return out;
    }
    attach_node(op, out, inputs, save_output, Rule::new(backward))
}

/// [`record_impl`] once it records: the node, attached to `out` (not
/// generic, so not compiled again for every backward rule).
#[track_caller]
fn attach_node(op: &'static str, mut out: Tensor, inputs: &[&Tensor], save_output: bool, backward: Rule) -> Tensor {
    let edges = inputs
        .iter()
        .map(|t| {
            if !t.0.requires_grad {
                None
            } else if let Some(node) = &t.0.grad_fn {
                Some(Edge::Node(node.clone()))
            } else {
                Some(Edge::Leaf(Arc::clone(&t.0)))
            }
        })
        .collect();
    let saved_output = save_output.then(|| (out.detach(), out.version()));
    let fresh = Node {
        op,
        location: Location::caller(),
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        inputs: edges,
        backward: Mutex::new(Some(backward)),
        saved_output: Mutex::new(saved_output),
        out_shape: Dims::from_slice(out.shape()),
        retain: AtomicBool::new(false),
        retained_grad: Mutex::new(None),
        hooks: Mutex::new(Vec::new()),
    };
    let node = match reuse(&NODE_SHELLS) {
        Some(mut shell) => {
            // The emptied node drops in place (nothing left in it to free).
            *Arc::get_mut(&mut shell).expect("a kept node has no other handle") = fresh;
            shell
        }
        None => Arc::new(fresh),
    };
    // An op's fresh output is its only handle: attach the node to it rather
    // than to a copy (three allocations fewer per recorded op). A handle
    // someone else holds (an op that returned an input) gets a new one.
    match Arc::get_mut(&mut out.0) {
        Some(inner) if inner.grad_fn.is_none() && !inner.requires_grad => {
            inner.requires_grad = true;
            inner.grad_fn = Some(node);
            out
        }
        _ => out.with_grad_fn(Some(node), true),
    }
}

/// Adds two gradients (recorded when create_graph is on).
///
/// Without create_graph, a sum that nothing else can see (its only handle,
/// storage shared with no view or saved tensor) is added to in place: a
/// weight used twice in one step (a discriminator on real and on fake data)
/// then costs one pass over its gradient, not a fresh buffer and three.
fn accumulate(old: Option<Tensor>, g: Tensor) -> Result<Tensor> {
    match old {
        None => Ok(g),
        Some(o)
            if !is_grad_enabled()
                && o.is_exclusive_cpu()
                && same_dims(o.shape(), g.shape())
                && o.dtype() == g.dtype() =>
        {
            o.add_scaled_(&g, 1.0)?;
            Ok(o)
        }
        Some(o) => o.add(&g),
    }
}

fn check_finite(node: &Node, g: &Tensor) -> Result<()> {
    let v = g.to_vec_f64()?;
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(Error::Anomaly {
            op: node.op,
            location: node.location.to_string(),
            what: if bad.is_nan() { "NaN".into() } else { "Inf".into() },
        });
    }
    Ok(())
}

/// Ready-queue entry: later nodes (higher seq) first, as PyTorch's engine does.
struct Ready(u64, Arc<Node>);
impl PartialEq for Ready {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ready {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

fn node_key(n: &Arc<Node>) -> usize {
    Arc::as_ptr(n) as usize
}

/// What the engine does with gradients that reach leaves / requested inputs.
enum Sink<'a> {
    /// `backward()`: accumulate into leaves' `.grad`.
    Accumulate,
    /// `backward_to(inputs)`: accumulate into these leaves' `.grad` only.
    AccumulateInto(&'a [Tensor]),
    /// `grad()`: capture the gradients of these tensors, touch no `.grad`.
    Capture(&'a [Tensor], Vec<Option<Tensor>>),
}

/// The maps and stack of one backward pass, kept per thread between passes
/// (cleared, capacity kept): a pass over a graph of n nodes grew three hash
/// maps from empty, a dozen reallocations and rehashes each time.
#[derive(Default)]
struct Scratch {
    deps: NodeMap<usize>,
    seen: NodeMap<()>,
    pending: NodeMap<Tensor>,
    stack: Vec<Arc<Node>>,
    /// The roots' nodes.
    roots: Vec<Arc<Node>>,
    /// Every node of the graph, for a pass with requested inputs.
    order: Vec<Arc<Node>>,
    /// Per node that leads to a requested input: which of its inputs do.
    masks: NodeMap<InputMask>,
    ready: BinaryHeap<Ready>,
}

impl Scratch {
    /// Drops what a pass left (an error midway, or gradients nothing
    /// consumed) and keeps the capacity.
    fn clear(&mut self) {
        self.deps.clear();
        self.seen.clear();
        self.pending.clear();
        self.stack.clear();
        self.roots.clear();
        self.order.clear();
        self.masks.clear();
        self.ready.clear();
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

/// A graph bigger than this many nodes does not leave its maps' capacity
/// behind for the thread's later passes.
const SCRATCH_KEEP: usize = 1 << 16;

/// The engine. Walks the graph from `roots` in reverse topological order.
fn run_backward(
    roots: &[Tensor],
    grads: &[Tensor],
    retain_graph: bool,
    create_graph: bool,
    sink: &mut Sink,
) -> Result<()> {
    // A backward started inside another (from a hook or a backward rule)
    // finds the slot empty and starts from fresh maps; so does one run while
    // the thread exits (from a thread-local's destructor), after the slot
    // is gone.
    let mut scratch = SCRATCH
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    let result = run_backward_in(&mut scratch, roots, grads, retain_graph, create_graph, sink);
    if scratch.seen.capacity() > SCRATCH_KEEP {
        return result;
    }
    // Whatever is left is dropped here, not kept alive until the next pass.
    scratch.clear();
    let _ = SCRATCH.try_with(|s| {
        let mut slot = s.borrow_mut();
        if slot.is_none() {
            *slot = Some(scratch);
        }
    });
    result
}

fn run_backward_in(
    scratch: &mut Scratch,
    roots: &[Tensor],
    grads: &[Tensor],
    retain_graph: bool,
    create_graph: bool,
    sink: &mut Sink,
) -> Result<()> {
    if roots.len() != grads.len() {
        return Err(Error::Autograd(format!(
            "{} outputs but {} output gradients",
            roots.len(),
            grads.len()
        )));
    }
    let _mode = NoGradGuard::set(create_graph);
    let anomaly = is_anomaly_enabled();

    // 1. Dependency counts: how many consumers will send a gradient to each node.
    let Scratch {
        deps,
        seen,
        pending,
        stack,
        roots: roots_nodes,
        order,
        masks: mask_map,
        ready,
    } = scratch;
    for (root, g) in roots.iter().zip(grads) {
        if !root.0.requires_grad {
            return Err(Error::Autograd(
                "element 0 of tensors does not require grad and does not have a grad_fn".into(),
            ));
        }
        if g.shape() != root.shape() {
            return Err(Error::ShapeMismatch {
                op: "backward (grad vs output)",
                lhs: root.shape().to_vec(),
                rhs: g.shape().to_vec(),
            });
        }
        match &root.0.grad_fn {
            Some(node) => {
                let k = node_key(node);
                let old = pending.remove(&k);
                pending.insert(k, accumulate(old, g.clone())?);
                if seen.insert(k, ()).is_none() {
                    stack.push(node.clone());
                }
            }
            None => deliver_leaf(&root.0, g.clone(), root, sink, create_graph)?,
        }
    }
    roots_nodes.extend(stack.iter().cloned());
    let targets = match sink {
        Sink::Accumulate => None,
        Sink::AccumulateInto(t) | Sink::Capture(t, _) => Some(*t),
    };
    while let Some(node) = stack.pop() {
        for edge in node.inputs.iter().flatten() {
            if let Edge::Node(parent) = edge {
                let k = node_key(parent);
                if targets.is_none() {
                    *deps.entry(k).or_insert(0) += 1;
                }
                if seen.insert(k, ()).is_none() {
                    stack.push(parent.clone());
                }
            }
        }
        if targets.is_some() {
            order.push(node);
        }
    }
    // With requested inputs, only nodes from which one of them can be reached
    // run, and each learns which of its inputs lead there (`needs`).
    let masks = targets.map(|t| {
        needed_inputs(order, t, mask_map);
        &*mask_map
    });
    if let Some(masks) = masks {
        for node in order.iter() {
            let Some(mask) = masks.get(&node_key(node)) else {
                continue;
            };
            for (edge, &need) in node.inputs.iter().zip(mask) {
                if let (Some(Edge::Node(parent)), true) = (edge, need) {
                    *deps.entry(node_key(parent)).or_insert(0) += 1;
                }
            }
        }
        roots_nodes.retain(|n| masks.contains_key(&node_key(n)));
    }
    for n in roots_nodes.drain(..) {
        if deps.get(&node_key(&n)).copied().unwrap_or(0) == 0 {
            ready.push(Ready(n.seq, n));
        }
    }

    // 2. Execute nodes whose consumers have all delivered.
    while let Some(Ready(_, node)) = ready.pop() {
        let key = node_key(&node);
        if masks.is_some_and(|m| !m.contains_key(&key)) {
            continue;
        }
        let Some(mut grad) = pending.remove(&key) else {
            continue;
        };
        for hook in node.hooks.lock().unwrap().iter() {
            if let Some(g) = hook(&grad) {
                grad = g;
            }
        }
        if node.retain.load(Ordering::Relaxed) {
            let mut slot = node.retained_grad.lock().unwrap();
            let old = slot.take();
            *slot = Some(accumulate(
                old,
                if create_graph { grad.clone() } else { grad.detach() },
            )?);
        }
        if let Sink::Capture(inputs, captured) = sink {
            for (i, t) in inputs.iter().enumerate() {
                if t.0.grad_fn.as_ref().is_some_and(|n| Arc::ptr_eq(n, &node)) {
                    captured[i] = Some(accumulate(captured[i].take(), grad.clone())?);
                }
            }
        }
        let input_grads = {
            let guard = node.backward.lock().unwrap();
            let f = guard.as_ref().ok_or_else(|| {
                Error::Autograd(format!(
                    "trying to backward through the graph a second time ({} at {}): its saved tensors were freed; \
                     pass retain_graph=true to the first backward",
                    node.op, node.location
                ))
            })?;
            let ctx = BackwardCtx {
                node: &node,
                create_graph,
                needs: masks.and_then(|m| m.get(&key)).map(|m| m.as_slice()),
                leaf_grads: match sink {
                    Sink::Accumulate => LeafGrads::All,
                    Sink::AccumulateInto(t) => LeafGrads::Only(t),
                    Sink::Capture(..) => LeafGrads::None,
                },
                anomaly,
            };
            f(&ctx, &grad)?
        };
        if !retain_graph {
            node.backward.lock().unwrap().take();
            node.saved_output.lock().unwrap().take();
        }
        if input_grads.len() != node.inputs.len() {
            return Err(Error::Autograd(format!(
                "backward of {} returned {} gradients for {} inputs",
                node.op,
                input_grads.len(),
                node.inputs.len()
            )));
        }
        let mask = masks.and_then(|m| m.get(&key));
        for (i, (edge, g)) in node.inputs.iter().zip(input_grads).enumerate() {
            if mask.is_some_and(|m| !m[i]) {
                // Leads to no requested input: not counted, not delivered.
                continue;
            }
            let (Some(edge), Some(g)) = (edge, g) else {
                // An input that needs a gradient but got none still counts as delivered.
                if let Some(Edge::Node(parent)) = edge {
                    release(parent, deps, pending, ready, masks);
                }
                continue;
            };
            if anomaly {
                check_finite(&node, &g)?;
            }
            match edge {
                Edge::Node(parent) => {
                    let k = node_key(parent);
                    if !same_dims(g.shape(), &parent.out_shape) {
                        return Err(Error::Autograd(format!(
                            "backward of {} produced a gradient of shape {:?} for an input of shape {:?}",
                            node.op,
                            g.shape(),
                            parent.out_shape
                        )));
                    }
                    let old = pending.remove(&k);
                    pending.insert(k, accumulate(old, g)?);
                    release(parent, deps, pending, ready, masks);
                }
                Edge::Leaf(inner) => {
                    let leaf = Tensor(std::mem::ManuallyDrop::new(inner.clone()));
                    deliver_leaf(inner, g, &leaf, sink, create_graph)?;
                }
            }
        }
    }
    Ok(())
}

/// Per input of a node: whether a requested gradient depends on it.
type InputMask = SmallVec<[bool; 8]>;

/// For requested `targets`, which nodes of `order` (every node reachable
/// from the roots) can reach one of them, and through which inputs: node key
/// → one flag per input. Nodes that reach none are left out.
fn needed_inputs(order: &mut [Arc<Node>], targets: &[Tensor], masks: &mut NodeMap<InputMask>) {
    // Parents are recorded before their consumers, so ascending seq visits
    // every parent before any node that uses it.
    order.sort_by_key(|n| n.seq);
    let target_node = |n: &Arc<Node>| {
        targets
            .iter()
            .any(|t| t.0.grad_fn.as_ref().is_some_and(|g| Arc::ptr_eq(g, n)))
    };
    let target_leaf = |l: &Arc<Inner>| targets.iter().any(|t| t.0.grad_fn.is_none() && Arc::ptr_eq(&t.0, l));
    for node in order.iter() {
        let mask: InputMask = node
            .inputs
            .iter()
            .map(|e| match e {
                Some(Edge::Leaf(l)) => target_leaf(l),
                Some(Edge::Node(p)) => masks.contains_key(&node_key(p)),
                None => false,
            })
            .collect();
        if target_node(node) || mask.iter().any(|&m| m) {
            masks.insert(node_key(node), mask);
        }
    }
}

/// One consumer of `parent` has delivered; queue it when all have.
fn release(
    parent: &Arc<Node>,
    deps: &mut NodeMap<usize>,
    pending: &NodeMap<Tensor>,
    ready: &mut BinaryHeap<Ready>,
    masks: Option<&NodeMap<InputMask>>,
) {
    let k = node_key(parent);
    let Some(d) = deps.get_mut(&k) else {
        // Not counted: leads to no requested input.
        return;
    };
    *d -= 1;
    if *d == 0 {
        if pending.contains_key(&k) {
            ready.push(Ready(parent.seq, parent.clone()));
        } else {
            // No gradient reached this node: its own inputs will get none from it.
            let mask = masks.and_then(|m| m.get(&k));
            for (i, edge) in parent.inputs.iter().enumerate() {
                if let (Some(Edge::Node(grandparent)), true) = (edge, mask.is_none_or(|m| m[i])) {
                    release(grandparent, deps, pending, ready, masks);
                }
            }
        }
    }
}

fn deliver_leaf(inner: &Arc<Inner>, mut g: Tensor, leaf: &Tensor, sink: &mut Sink, create_graph: bool) -> Result<()> {
    for hook in inner.hooks.lock().unwrap().iter() {
        if let Some(h) = hook(&g) {
            g = h;
        }
    }
    match sink {
        Sink::AccumulateInto(targets) if !targets.iter().any(|t| Arc::ptr_eq(&t.0, inner)) => {}
        Sink::Accumulate | Sink::AccumulateInto(_) => {
            // Stored as a plain contiguous tensor. A CPU gradient that
            // already is one, with no other handle (a fresh result of a
            // backward rule), is stored as it is rather than through a new
            // handle (an allocation per delivery; `contiguous_data` would
            // only detach it).
            let plain = g.0.grad_fn.is_none() && !g.0.requires_grad && Arc::get_mut(&mut g.0).is_some();
            let g = if create_graph || (plain && g.device() == crate::Device::Cpu && g.is_contiguous()) {
                g
            } else {
                g.contiguous_data()?
            };
            let mut slot = inner.grad.lock().unwrap();
            let old = slot.take();
            *slot = Some(accumulate(old, g)?);
        }
        Sink::Capture(inputs, captured) => {
            for (i, t) in inputs.iter().enumerate() {
                if t.same(leaf) || (t.0.grad_fn.is_none() && Arc::ptr_eq(&t.0, inner)) {
                    captured[i] = Some(accumulate(captured[i].take(), g.clone())?);
                }
            }
        }
    }
    Ok(())
}

/// `loss.backward()` and friends: accumulate gradients into the leaves.
pub fn backward(outputs: &[Tensor], grad_outputs: &[Tensor], retain_graph: bool, create_graph: bool) -> Result<()> {
    run_backward(
        outputs,
        grad_outputs,
        retain_graph || create_graph,
        create_graph,
        &mut Sink::Accumulate,
    )
}

/// `backward` restricted to `inputs`: gradients accumulate into the
/// `.grad` of these leaves only, and only the part of the graph that leads
/// to them runs (PyTorch's `backward(inputs=...)`). A GAN's generator step
/// uses it to skip the discriminator's weight gradients.
pub fn backward_to(
    outputs: &[Tensor],
    grad_outputs: &[Tensor],
    inputs: &[Tensor],
    retain_graph: bool,
    create_graph: bool,
) -> Result<()> {
    if let Some(t) = inputs.iter().find(|t| t.0.grad_fn.is_some() || !t.0.requires_grad) {
        return Err(Error::Autograd(format!(
            "backward_to: inputs must be leaves that require grad (got a tensor of shape {:?} that {})",
            t.shape(),
            if t.0.grad_fn.is_some() {
                "is not a leaf"
            } else {
                "does not require grad"
            }
        )));
    }
    run_backward(
        outputs,
        grad_outputs,
        retain_graph || create_graph,
        create_graph,
        &mut Sink::AccumulateInto(inputs),
    )
}

/// The functional form: gradients of `outputs` with respect to `inputs`,
/// without touching any `.grad`. `grad_outputs` defaults to ones (scalar
/// outputs). With `create_graph` the result is itself differentiable.
/// An input the outputs do not depend on gets an error unless `allow_unused`.
pub fn grad(
    outputs: &[Tensor],
    inputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    retain_graph: bool,
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    let grads = grad_allow_unused(outputs, inputs, grad_outputs, retain_graph, create_graph)?;
    grads
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            g.ok_or_else(|| {
                Error::Autograd(format!(
                    "input {i} is not used to compute the outputs (or does not require grad)"
                ))
            })
        })
        .collect()
}

/// [`grad`] that returns `None` for inputs the outputs do not depend on.
pub fn grad_allow_unused(
    outputs: &[Tensor],
    inputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    retain_graph: bool,
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    let ones: Vec<Tensor>;
    let go = match grad_outputs {
        Some(g) => g,
        None => {
            ones = outputs
                .iter()
                .map(|o| {
                    if o.numel() != 1 {
                        return Err(Error::Autograd(format!(
                            "grad of a non-scalar output (shape {:?}) needs grad_outputs",
                            o.shape()
                        )));
                    }
                    Tensor::ones(o.shape(), o.dtype(), o.device())
                })
                .collect::<Result<_>>()?;
            &ones
        }
    };
    let mut sink = Sink::Capture(inputs, vec![None; inputs.len()]);
    run_backward(outputs, go, retain_graph || create_graph, create_graph, &mut sink)?;
    let Sink::Capture(_, captured) = sink else {
        unreachable!()
    };
    Ok(captured)
}

/// A user-defined differentiable op: `forward` computes the output (grad mode
/// is off inside it), `backward` maps dL/d output to dL/d inputs. Write
/// `backward` with Tensor ops and it supports higher-order gradients too.
pub trait Function: Send + Sync + 'static {
    /// Name shown in errors and DOT output.
    fn name(&self) -> &'static str;
    /// The forward computation.
    fn forward(&self, inputs: &[Tensor]) -> Result<Tensor>;
    /// One gradient (or None) per input.
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>>;

    /// Runs the op and records it.
    #[track_caller]
    fn apply(self, inputs: &[&Tensor]) -> Result<Tensor>
    where
        Self: Sized,
    {
        let plain: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
        let out = no_grad(|| self.forward(&plain))?;
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::new(t)).collect();
        let name = self.name();
        Ok(record_impl(name, out, inputs, true, move |ctx, g| {
            let xs = saved.iter().map(|s| ctx.unpack(s)).collect::<Result<Vec<_>>>()?;
            let y = ctx.output()?;
            // The rule's own Vec becomes the inline-or-heap list as it is.
            self.backward(&xs, &y, g).map(InputGrads::from_vec)
        }))
    }
}

/// Graphviz DOT of the graph behind `t`: ops as ellipses (name, output shape,
/// source line), leaves as boxes (shape), edges from inputs to consumers.
pub(crate) fn to_dot(t: &Tensor) -> String {
    let mut out = String::from("digraph kiln {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n");
    let Some(root) = &t.0.grad_fn else {
        out.push_str(&format!("  leaf [shape=box, label=\"leaf {:?}\"];\n}}\n", t.shape()));
        return out;
    };
    let mut seen: HashMap<usize, ()> = HashMap::new();
    let mut stack = vec![root.clone()];
    seen.insert(node_key(root), ());
    while let Some(node) = stack.pop() {
        let id = node_key(&node);
        let freed = node.backward.lock().unwrap().is_none();
        out.push_str(&format!(
            "  n{id} [label=\"{}\\n{:?}\\n{}:{}{}\"];\n",
            node.op,
            node.out_shape,
            node.location.file().rsplit('/').next().unwrap_or(""),
            node.location.line(),
            if freed { "\\n(freed)" } else { "" }
        ));
        for edge in node.inputs.iter().flatten() {
            match edge {
                Edge::Node(p) => {
                    out.push_str(&format!("  n{} -> n{id};\n", node_key(p)));
                    if seen.insert(node_key(p), ()).is_none() {
                        stack.push(p.clone());
                    }
                }
                Edge::Leaf(inner) => {
                    let lid = Arc::as_ptr(inner) as usize;
                    if seen.insert(lid, ()).is_none() {
                        out.push_str(&format!(
                            "  l{lid} [shape=box, style=filled, fillcolor=lightblue, label=\"leaf\\n{:?}\"];\n",
                            inner.shape
                        ));
                    }
                    out.push_str(&format!("  l{lid} -> n{id};\n"));
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

impl Tensor {
    /// The node that produced this tensor, as a weak reference (for tests
    /// that check the graph is freed).
    pub fn grad_fn_weak(&self) -> Option<std::sync::Weak<Node>> {
        self.0.grad_fn.as_ref().map(Arc::downgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn kept_nodes() -> Vec<*const Node> {
        NODE_SHELLS.with(|l| l.borrow().iter().map(Arc::as_ptr).collect())
    }

    #[test]
    fn a_freed_node_is_emptied_kept_and_reused_whole() {
        // A thread of its own: its list starts empty.
        std::thread::spawn(|| {
            let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3], Device::Cpu)
                .unwrap()
                .requires_grad(true);
            let y = x.mul(&x).unwrap();
            let node = Arc::as_ptr(y.0.grad_fn.as_ref().unwrap());
            assert!(kept_nodes().is_empty());
            drop(y);
            assert_eq!(kept_nodes(), vec![node], "the freed node is kept");
            // Kept empty: no edge to x, no rule, no saved tensor.
            NODE_SHELLS.with(|l| {
                let l = l.borrow();
                let n = &l[0];
                assert!(n.inputs.is_empty());
                assert!(n.backward.lock().unwrap().is_none());
                assert!(n.saved_output.lock().unwrap().is_none());
            });
            assert_eq!(Arc::strong_count(&x.0), 1, "the kept node let go of its input");
            // The next op's node is written into it, all of it its own.
            let z = x.add(&x).unwrap().mul(&x).unwrap();
            let add = z.0.grad_fn.as_ref().unwrap().inputs[0].as_ref().map(|e| match e {
                Edge::Node(n) => Arc::as_ptr(n),
                Edge::Leaf(_) => std::ptr::null(),
            });
            assert_eq!(add, Some(node), "the add's node reuses the kept one");
            assert!(kept_nodes().is_empty());
            z.sum().unwrap().backward().unwrap();
            // z = 2x², exact in f64 (also under Miri, which perturbs exp).
            let want: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| 4.0 * v).collect();
            assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), want);
            // A node someone still watches (a weak handle) is freed, not kept.
            let w = x.mul(&x).unwrap();
            let watch = w.grad_fn_weak().unwrap();
            let before = kept_nodes().len();
            drop(w);
            assert!(watch.upgrade().is_none());
            assert_eq!(kept_nodes().len(), before);
        })
        .join()
        .unwrap();
    }
}
