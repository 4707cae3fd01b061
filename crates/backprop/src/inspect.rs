//! Looking inside a backward pass: gradients by node name and by scope, and the tape
//! as a Graphviz picture.

use crate::{Error, Gradients, format_number};
use descent_tape::{NodeId, Tape};
use descent_tensor::{Float, ShapeDisplay, View};
use std::fmt::Write;

impl<T: Float> Gradients<T> {
    /// The gradient (δ) of the node named `name` on `tape` (the first node of that
    /// name), shaped like its value: zeros when no gradient reached it, as
    /// [`Gradients::wrt`] gives.
    ///
    /// # Panics
    /// If no node on `tape` has that name, or these gradients were not computed on
    /// `tape` in its current generation ([`Gradients::try_named`] returns those as
    /// errors).
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(2.0);
    /// let h = (x * x).named("h");
    /// let grads = (h * 3.0).backward();
    /// assert_eq!(grads.named(&tape, "h").item(), 3.0);
    /// ```
    pub fn named(&self, tape: &Tape<T>, name: &str) -> View<'_, T> {
        match self.try_named(tape, name) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The fallible form of [`Gradients::named`].
    ///
    /// # Errors
    /// [`Error::UnknownName`] if no node has that name; [`Error::NotKept`] if it names
    /// an intermediate node and these gradients keep only the leaves'
    /// ([`crate::Keep::Leaves`]); [`Error::Argument`] if these
    /// gradients were not computed on `tape` in its current generation;
    /// [`Error::RecordedAfter`] if the named node was recorded after they were.
    ///
    /// ```
    /// use descent_backprop::{Backward, Error};
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(2.0).named("x");
    /// let grads = (x * 3.0).backward();
    /// assert_eq!(grads.try_named(&tape, "x").unwrap().item(), 3.0);
    /// assert!(matches!(grads.try_named(&tape, "y"), Err(Error::UnknownName { .. })));
    /// ```
    pub fn try_named(&self, tape: &Tape<T>, name: &str) -> Result<View<'_, T>, Error> {
        self.check_tape(tape)?;
        let read = tape.read();
        let id = read
            .names()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .ok_or_else(|| Error::UnknownName {
                name: name.to_owned(),
            })?;
        if id.index() >= self.known {
            return Err(Error::RecordedAfter {
                id,
                known: self.known,
            });
        }
        self.check_kept(id)?;
        Ok(self.by_id(id).unwrap_or_else(|| self.zeros_like(id)))
    }

    /// The δ of every scope: for each scope path, the gradient of its output (the last
    /// node recorded in it), in backward order (the scope whose output is nearest the
    /// loss first). Scopes whose output no gradient reached are left out. A store that
    /// keeps only the leaves' gradients has no δ to give: [`Error::NotKept`].
    ///
    /// ```
    /// use descent_backprop::Backward;
    /// use descent_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(0.5);
    /// let h1 = { let _s = tape.scope("layer1"); x.tanh() };
    /// let h2 = { let _s = tape.scope("layer2"); h1 * 2.0 };
    /// let grads = h2.backward();
    /// let deltas = grads.scope_deltas(&tape).unwrap();
    /// assert_eq!(deltas[0].scope, "layer2");
    /// assert_eq!(deltas[1].scope, "layer1");
    /// assert_eq!(deltas[1].delta.item(), 2.0);
    /// ```
    pub fn scope_deltas(&self, tape: &Tape<T>) -> Result<Vec<ScopeDelta<T>>, Error> {
        self.check_tape(tape)?;
        let read = tape.read();
        let mut last: Vec<(String, NodeId)> = Vec::new();
        for i in 0..read.nodes().len().min(self.len()) {
            let id = NodeId::from_index(i);
            let scope = read.scope_of(id);
            if scope.is_empty() {
                continue;
            }
            match last.iter_mut().find(|(s, _)| s == scope) {
                Some(entry) => entry.1 = id,
                None => last.push((scope.to_owned(), id)),
            }
        }
        last.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        if let Some(&(_, id)) = last.iter().find(|(_, id)| self.is_dropped(id.index())) {
            return Err(Error::NotKept { id });
        }
        Ok(last
            .into_iter()
            .filter_map(|(scope, id)| {
                self.by_id(id).map(|v| ScopeDelta {
                    scope,
                    output: id,
                    delta: v.to_tensor(),
                })
            })
            .collect())
    }

    fn check_tape(&self, tape: &Tape<T>) -> Result<(), Error> {
        if tape.uid() != self.tape_uid || tape.generation() != self.generation {
            return Err(Error::Argument {
                op: "gradient lookup",
                reason: format!(
                    "these gradients are of tape #{} generation {}, not tape #{} generation {}",
                    self.tape_uid,
                    self.generation,
                    tape.uid(),
                    tape.generation()
                ),
            });
        }
        Ok(())
    }
}

/// The δ of one scope: the gradient of the last node recorded in it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeDelta<T: Float> {
    /// The scope path (`layer1/act`).
    pub scope: String,
    /// The scope's output node.
    pub output: NodeId,
    /// Its gradient.
    pub delta: descent_tensor::Tensor<T>,
}

/// The tape as a Graphviz DOT graph: one box per node (op, name, shape, value and,
/// with `grads`, gradient), an edge per operand, and scopes as nested clusters. Render
/// with `dot -Tsvg graph.dot -o graph.svg`.
///
/// ```
/// use descent_backprop::{to_dot, Backward};
/// use descent_tape::Tape;
/// let tape = Tape::<f64>::new();
/// let x = tape.var(0.5).named("x");
/// let y = { let _s = tape.scope("layer1"); x.tanh() };
/// let grads = y.backward();
/// let dot = to_dot(&tape, Some(&grads));
/// assert!(dot.starts_with("digraph tape {"));
/// assert!(dot.contains("subgraph cluster_0 {"));
/// assert!(dot.contains("n0 -> n1;"));
/// ```
pub fn to_dot<T: Float>(tape: &Tape<T>, grads: Option<&Gradients<T>>) -> String {
    let read = tape.read();
    let n = read.nodes().len();
    let fmt_view = |v: View<'_, T>| -> String {
        if v.len() == 1 {
            format_number(v.data()[0].as_f64(), 4, Some(1e-12))
        } else {
            let norm = descent_tape::norm::l2_norm(v.data());
            format!("‖·‖ {}", format_number(norm, 4, Some(1e-12)))
        }
    };
    let label = |i: usize| -> String {
        let id = NodeId::from_index(i);
        let node = &read.nodes()[i];
        let mut l = format!("#{i} {}", node.op());
        if let Some(name) = read.name(id) {
            let _ = write!(l, " '{name}'");
        }
        let _ = write!(
            l,
            "\\n{} value {}",
            ShapeDisplay(read.shape(id)),
            fmt_view(read.value(id))
        );
        if let Some(g) = grads.and_then(|g| g.by_id(id)) {
            let _ = write!(l, "\\ngrad {}", fmt_view(g));
        }
        l.replace('"', "\\\"")
    };
    // Scope paths as a tree: each node goes in the cluster of its full path.
    let mut paths: Vec<String> = Vec::new();
    for i in 0..n {
        let s = read.scope_of(NodeId::from_index(i));
        let mut prefix = String::new();
        for part in s.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !paths.contains(&prefix) {
                paths.push(prefix.clone());
            }
        }
    }
    let mut out = String::from(
        "digraph tape {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    fn emit(
        out: &mut String,
        parent: &str,
        depth: usize,
        paths: &[String],
        n: usize,
        scope_of: &dyn Fn(usize) -> String,
        label: &dyn Fn(usize) -> String,
    ) {
        let indent = "  ".repeat(depth + 1);
        for i in 0..n {
            if scope_of(i) == parent {
                let _ = writeln!(out, "{indent}n{i} [label=\"{}\"];", label(i));
            }
        }
        for (k, p) in paths.iter().enumerate() {
            let is_child = match p.rsplit_once('/') {
                Some((head, _)) => head == parent,
                None => parent.is_empty(),
            };
            if is_child {
                let _ = writeln!(out, "{indent}subgraph cluster_{k} {{");
                let _ = writeln!(out, "{indent}  label=\"{p}\";");
                emit(out, p, depth + 1, paths, n, scope_of, label);
                let _ = writeln!(out, "{indent}}}");
            }
        }
    }
    let scope_of = |i: usize| read.scope_of(NodeId::from_index(i)).to_owned();
    emit(&mut out, "", 0, &paths, n, &scope_of, &label);
    for i in 0..n {
        for p in read.parents(NodeId::from_index(i)) {
            let _ = writeln!(out, "  n{} -> n{i};", p.index());
        }
    }
    out.push_str("}\n");
    out
}
