// The native gatherer of the CPU fused step: the per-tensor checks of cpu_step.py's Python loop, in C++.
//
// cpu_step.fused_cpu_step spends 1.2–2 µs per parameter in Python deciding whether a tensor may go to a C
// kernel and collecting its addresses; on a model of 2 000 small tensors that costs more than the kernel
// itself and more than torch's whole foreach step. This module makes the same decisions on the C++ tensors
// (0.13–0.5 µs a parameter for a whole step, most of it the optimizer-state dict lookup and the overlap sort)
// and calls the kernels of cpu_kernels.h through their addresses, with the GIL released. It is optional:
// built in the background by cpu_build.py, used once it is ready; cpu_step.py's Python loop stays the
// reference and tests/test_fused_cpu_gather.py checks that both send the same tensors to the reference rule
// and give bit-identical results, partly overlapping memory included.
//
// step_group(params, states, keys, steps, extra, state_dtype, kernels, kernel_name, hp, grad_inv_scale,
//            nthreads) -> (rest, stepped)
//   params       the group's parameter list
//   states       optimizer.state (a dict keyed by parameter), or None for a stateless rule
//   keys         (s0, s1, s2): state entry names passed as the kernel's s0, s1, s2, or None
//   steps        1 if state["step"] is read and advanced by the kernel
//   extra        a tuple of the names of extra 0-d float32/float64 state entries, read with the step counter (NAdam's
//                ("mu_product",), ASGD's ("eta", "mu")), at most kMaxExtra; passed tensor-major, extra[t*E + e]
//   state_dtype  the group's state_dtype (a torch.dtype) or None
//   kernels      the addresses of the rule's kernel variants f32, f64, bf16f32, f16f32
//   kernel_name  for error messages
//   hp           the hyperparameters in the kernel's order (a tuple of floats)
//   grad_inv_scale, nthreads   as the kernel takes them
// rest: the parameters with a gradient that were not stepped (in group order), which the caller steps with the
// reference rule; stepped: how many tensors the kernels stepped.

/* The interface's version: descentlab/fused/abi.py's GATHER_ABI_VERSION, passed by cpu_build.py. */
#ifndef DL_GATHER_ABI_VERSION
#error "compile with -DDL_GATHER_ABI_VERSION=<descentlab.fused.abi.GATHER_ABI_VERSION>"
#endif
#include <Python.h>

#include <torch/csrc/Dtype.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>

namespace {

// The most extra 0-d state entries per tensor (descentlab/fused/abi.py's MAX_EXTRA).
constexpr int kMaxExtra = 2;
// Batches: 4 kernel variants × the step-dtype bits (bit 0: step float64, bit 1 + e: extra e float64).
constexpr int kKinds = 2 << kMaxExtra;
constexpr int kSlots = 4 * kKinds;

using KernelFn = int (*)(int64_t, const int64_t *, void *const *, void *const *, void *const *, void *const *,
                         void *const *, void *const *, void *const *, int, const double *, double, int);

// A plain torch.Tensor (not Parameter, not a subclass): what state entries and gradients must be.
bool is_plain_tensor(PyObject *obj) { return Py_TYPE(obj) == reinterpret_cast<PyTypeObject *>(THPVariableClass); }

// Memory that is not the tensor's value (a negated view, a ZeroTensor), or a tensor whose data_ptr may not be
// its memory (a __torch_dispatch__ subclass): never handed to a kernel.
bool odd_memory(const at::Tensor &t) {
    return t.is_neg() || t._is_zerotensor() || t.key_set().has(c10::DispatchKey::Python);
}

bool strided_cpu_contiguous(const at::Tensor &t) {
    return t.defined() && t.layout() == c10::kStrided && t.device().is_cpu() && t.is_contiguous();
}

// (parameter dtype, state dtype) -> kernel variant 0..3 (f32, f64, bf16f32, f16f32), or -1.
int variant_of(c10::ScalarType param, c10::ScalarType state) {
    if (param == c10::kFloat && state == c10::kFloat) return 0;
    if (param == c10::kDouble && state == c10::kDouble) return 1;
    if (param == c10::kBFloat16 && state == c10::kFloat) return 2;
    if (param == c10::kHalf && state == c10::kFloat) return 3;
    return -1;
}

bool is_param_dtype(c10::ScalarType t) {
    return t == c10::kFloat || t == c10::kDouble || t == c10::kBFloat16 || t == c10::kHalf;
}

// The bytes a tensor covers, [lo, hi), whose parameter it serves (its index in the group) and whether the kernel
// writes it (parameters and state always; gradients when GradScaler's unscale writes them back).
struct Span {
    uintptr_t lo, hi;
    Py_ssize_t owner;
    bool written;
};

// The span of a contiguous tensor.
Span span_of(const at::Tensor &t, Py_ssize_t owner, bool written) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(t.data_ptr());
    return Span{lo, lo + static_cast<uintptr_t>(t.numel()) * c10::elementSize(t.scalar_type()), owner, written};
}

// A 0-d float32/float64 CPU tensor with memory of its own: a step counter, or NAdam's Π.
bool is_counter(const at::Tensor &t) {
    const c10::ScalarType st = t.scalar_type();
    return t.device().is_cpu() && t.layout() == c10::kStrided && t.dim() == 0 &&
           (st == c10::kFloat || st == c10::kDouble) && !odd_memory(t);
}

// The bytes a dense CPU tensor's elements lie in, strides included, as the span of parameter `owner`; false for
// a tensor with no memory of its own to speak of (empty, not strided, not on the CPU, a ZeroTensor, a
// __torch_dispatch__ subclass) — cpu_step._extent.
bool extent(const at::Tensor &t, Py_ssize_t owner, bool written, Span &out) {
    if (!t.defined() || t.layout() != c10::kStrided || !t.device().is_cpu() || t.numel() == 0) return false;
    if (t.key_set().has(c10::DispatchKey::Python) || t._is_zerotensor()) return false;
    const uintptr_t first = reinterpret_cast<uintptr_t>(t.data_ptr());
    if (first == 0) return false;
    int64_t span = 1;
    for (int64_t d = 0; d < t.dim(); d++) span += (t.size(d) - 1) * t.stride(d);
    out = Span{first, first + static_cast<uintptr_t>(span) * c10::elementSize(t.scalar_type()), owner, written};
    return true;
}

// One kernel call: per tensor the parameter, its gradient, the state tensors (s0, s1, s2, step) and the extra 0-d
// entries (E per tensor, in extra).
struct Batch {
    std::vector<int64_t> numel;
    std::vector<void *> param, grad, s0, s1, s2, step, extra;
    std::vector<at::Tensor> owners, grads;  // held so their memory outlives the GIL-free call
    std::vector<Py_ssize_t> index;          // position in the group
};

// The state tensor state[key] if it is a plain tensor, else nullptr (borrowed).
PyObject *state_entry(PyObject *state, PyObject *key) {
    PyObject *value = PyDict_GetItemWithError(state, key);
    if (value == nullptr || !is_plain_tensor(value)) return nullptr;
    return value;
}

struct Args {
    PyObject *params, *states, *keys, *extra, *state_dtype, *kernels, *hp;
    int steps, nthreads;
    const char *kernel_name;
    double grad_inv_scale;
};

// Decide for one parameter (a Python object of the group, at index `owner`) whether it is stepped, and where;
// -1 = rest, -2 = no gradient (skipped, as the reference loop skips it), -3 = a Python error is set. On success
// `spans` holds the memory of its tensors (n_spans of them).
int examine(const Args &a, PyObject *obj, Py_ssize_t owner, PyObject *const key_objs[3], int stateful,
            bool have_wide, c10::ScalarType wide, Batch *batches[kSlots], Batch *&target, at::Tensor &param_out,
            at::Tensor &grad_out, void *state_ptrs[4 + kMaxExtra], Span spans[6 + kMaxExtra], int &n_spans) {
    if (!THPVariable_Check(obj)) return -1;
    const at::Tensor &param = THPVariable_Unpack(obj);
    const at::Tensor &grad = param.grad();
    if (!grad.defined()) return -2;
    if (!THPVariable_CheckExact(obj) || odd_memory(param)) return -1;  // Tensor or Parameter, nothing else
    const c10::ScalarType pdtype = param.scalar_type();
    if (!is_param_dtype(pdtype) || !strided_cpu_contiguous(param)) return -1;
    c10::ScalarType sdtype = pdtype;
    if (have_wide && c10::elementSize(wide) > c10::elementSize(pdtype)) sdtype = wide;
    const int variant = variant_of(pdtype, sdtype);
    if (variant < 0) return -1;
    PyObject *state = nullptr;
    if (stateful) {
        state = PyDict_GetItemWithError(a.states, obj);
        if (state == nullptr && PyErr_Occurred()) return -3;
        if (state == nullptr || !PyDict_Check(state) || PyDict_GET_SIZE(state) == 0) return -1;  // first step
    }
    const int64_t numel = param.numel();
    int count = 0;
    void *pointers[5 + kMaxExtra];
    spans[count] = span_of(param, owner, true);
    pointers[count++] = param.data_ptr();
    for (int k = 0; k < 3; k++) {
        state_ptrs[k] = nullptr;
        if (key_objs[k] == Py_None) continue;
        PyObject *entry = state_entry(state, key_objs[k]);
        if (entry == nullptr) return PyErr_Occurred() ? -3 : -1;
        const at::Tensor &t = THPVariable_Unpack(entry);
        if (t.scalar_type() != sdtype || !strided_cpu_contiguous(t) || t.sizes() != param.sizes() || odd_memory(t))
            return -1;
        spans[count] = span_of(t, owner, true);
        state_ptrs[k] = pointers[count++] = t.data_ptr();
    }
    const Py_ssize_t n_extra = PyTuple_GET_SIZE(a.extra);
    for (int k = 3; k < 4 + kMaxExtra; k++) state_ptrs[k] = nullptr;
    int step_kind = 0;
    if (a.steps) {
        static PyObject *step_key = PyUnicode_InternFromString("step");
        PyObject *entry = state_entry(state, step_key);
        if (entry == nullptr) return PyErr_Occurred() ? -3 : -1;
        const at::Tensor &step = THPVariable_Unpack(entry);
        if (!is_counter(step)) return -1;
        step_kind = step.scalar_type() == c10::kDouble ? 1 : 0;
        spans[count] = span_of(step, owner, true);
        state_ptrs[3] = pointers[count++] = step.data_ptr();
        for (Py_ssize_t e = 0; e < n_extra; e++) {
            PyObject *extra_entry = state_entry(state, PyTuple_GET_ITEM(a.extra, e));
            if (extra_entry == nullptr) return PyErr_Occurred() ? -3 : -1;
            const at::Tensor &extra = THPVariable_Unpack(extra_entry);
            if (!is_counter(extra)) return -1;
            // torch's loader: a float64 Π beside a float32 step; ASGD's η, μ follow the default dtype
            if (extra.scalar_type() == c10::kDouble) step_kind |= 2 << e;
            spans[count] = span_of(extra, owner, true);
            state_ptrs[4 + e] = pointers[count++] = extra.data_ptr();
        }
    }
    for (int i = 0; i < count; i++)  // two of them at one address (overlaps in part: the sweep in step_group)
        for (int j = i + 1; j < count; j++)
            if (pointers[i] == pointers[j]) return -1;
    // the gradient: a plain dense contiguous CPU tensor of the parameter's dtype and size, memory of its own.
    // Its Python object, if it has one (a gradient made by backward has none until Python asks), must be a
    // torch.Tensor, as cpu_step.py requires.
    PyObject *grad_obj = grad.unsafeGetTensorImpl()->pyobj_slot()->load_pyobj();
    if ((grad_obj != nullptr && !is_plain_tensor(grad_obj)) || grad.layout() != c10::kStrided ||
        !grad.device().is_cpu() || !grad.is_contiguous() || grad.scalar_type() != pdtype || grad.numel() != numel ||
        grad.is_neg() || grad.key_set().has(c10::DispatchKey::Python))
        return -1;
    void *grad_pointer = grad._is_zerotensor() ? nullptr : grad.data_ptr();
    if (grad_pointer == nullptr) return -1;
    spans[count] = span_of(grad, owner, a.grad_inv_scale != 0);
    for (int i = 0; i < count; i++)
        if (pointers[i] == grad_pointer) return -1;
    n_spans = count + 1;
    const int slot = variant * kKinds + step_kind;
    if (batches[slot] == nullptr) batches[slot] = new Batch();
    target = batches[slot];
    param_out = param;
    grad_out = grad;
    return slot;
}

PyObject *step_group(PyObject *, PyObject *args) {
    Args a{};
    if (!PyArg_ParseTuple(args, "O!OO!iO!OO!sO!di", &PyList_Type, &a.params, &a.states, &PyTuple_Type, &a.keys,
                          &a.steps, &PyTuple_Type, &a.extra, &a.state_dtype, &PyTuple_Type, &a.kernels, &a.kernel_name,
                          &PyTuple_Type, &a.hp, &a.grad_inv_scale, &a.nthreads))
        return nullptr;
    if (PyTuple_GET_SIZE(a.keys) != 3 || PyTuple_GET_SIZE(a.kernels) != 4 || PyTuple_GET_SIZE(a.extra) > kMaxExtra) {
        PyErr_SetString(PyExc_ValueError, "step_group: keys must have 3 entries, kernels 4 and extra at most 2");
        return nullptr;
    }
    for (Py_ssize_t e = 0; e < PyTuple_GET_SIZE(a.extra); e++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(a.extra, e))) {
            PyErr_SetString(PyExc_TypeError, "step_group: extra must be a tuple of state keys (str)");
            return nullptr;
        }
    }
    const Py_ssize_t n_extra = a.steps != 0 ? PyTuple_GET_SIZE(a.extra) : 0;
    PyObject *key_objs[3];
    int stateful = a.steps != 0;
    for (int k = 0; k < 3; k++) {
        key_objs[k] = PyTuple_GET_ITEM(a.keys, k);
        if (key_objs[k] != Py_None) stateful = 1;
    }
    if (stateful && !PyDict_Check(a.states)) {
        PyErr_SetString(PyExc_TypeError, "step_group: states must be a dict for a rule with state");
        return nullptr;
    }
    bool have_wide = a.state_dtype != Py_None;
    c10::ScalarType wide = c10::kFloat;
    if (have_wide) {
        if (!THPDtype_Check(a.state_dtype)) {
            PyErr_SetString(PyExc_TypeError, "step_group: state_dtype must be a torch.dtype or None");
            return nullptr;
        }
        wide = reinterpret_cast<THPDtype *>(a.state_dtype)->scalar_type;
    }
    KernelFn kernels[4];
    for (int v = 0; v < 4; v++) {
        kernels[v] = reinterpret_cast<KernelFn>(PyLong_AsVoidPtr(PyTuple_GET_ITEM(a.kernels, v)));
        if (kernels[v] == nullptr) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "step_group: a kernel address is NULL");
            return nullptr;
        }
    }
    const Py_ssize_t nhp = PyTuple_GET_SIZE(a.hp);
    std::vector<double> hp(static_cast<size_t>(nhp));
    for (Py_ssize_t i = 0; i < nhp; i++) {
        hp[static_cast<size_t>(i)] = PyFloat_AsDouble(PyTuple_GET_ITEM(a.hp, i));
        if (PyErr_Occurred()) return nullptr;
    }

    Batch *batches[kSlots] = {nullptr};
    struct Cleanup {
        Batch **b;
        ~Cleanup() { for (int i = 0; i < kSlots; i++) delete b[i]; }
    } cleanup{batches};
    const Py_ssize_t n = PyList_GET_SIZE(a.params);
    std::vector<char> to_rest(static_cast<size_t>(n), 0);
    bool any_rest = false;
    Py_ssize_t stepped = 0;
    std::vector<Span> spans, rest_spans;
    try {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *obj = PyList_GET_ITEM(a.params, i);
            Batch *target = nullptr;
            at::Tensor param, grad;
            void *state_ptrs[4 + kMaxExtra];
            Span own[6 + kMaxExtra];
            int n_own = 0;
            const int slot = examine(a, obj, i, key_objs, stateful, have_wide, wide, batches, target, param, grad,
                                     state_ptrs, own, n_own);
            if (slot == -3) return nullptr;
            if (slot == -2) continue;
            if (slot == -1) {
                to_rest[static_cast<size_t>(i)] = 1;
                any_rest = true;
                // the reference rule writes this parameter (and reads its gradient) after the kernels ran: a
                // batched tensor overlapping them must wait for it too
                if (THPVariable_Check(obj)) {
                    const at::Tensor &p = THPVariable_Unpack(obj);
                    Span span;
                    if (extent(p, i, true, span)) rest_spans.push_back(span);
                    if (extent(p.grad(), i, a.grad_inv_scale != 0, span)) rest_spans.push_back(span);
                }
                continue;
            }
            target->numel.push_back(param.numel());
            target->param.push_back(param.data_ptr());
            target->grad.push_back(grad.data_ptr());
            target->s0.push_back(state_ptrs[0]);
            target->s1.push_back(state_ptrs[1]);
            target->s2.push_back(state_ptrs[2]);
            target->step.push_back(state_ptrs[3]);
            for (Py_ssize_t e = 0; e < n_extra; e++) target->extra.push_back(state_ptrs[4 + e]);
            target->owners.push_back(std::move(param));
            target->grads.push_back(std::move(grad));
            target->index.push_back(i);
            for (int k = 0; k < n_own; k++)
                if (own[k].lo < own[k].hi) spans.push_back(own[k]);  // an empty tensor covers no memory
        }
        // Tensors that share memory, wholly or in part, with another tensor the kernels write (weights tied through
        // .data, overlapping views of one buffer, a gradient overlapping a parameter): the kernel could update
        // that memory from two threads at once, each from the old values, where the reference rule steps one
        // parameter after the other. Sorting every tensor's bytes by address, a run of overlapping spans that
        // holds a written one sends all its parameters to the reference rule (cpu_step._shared_memory's rule).
        std::vector<char> clash(static_cast<size_t>(n), 0);
        bool any_clash = false;
        if (!spans.empty()) spans.insert(spans.end(), rest_spans.begin(), rest_spans.end());
        std::sort(spans.begin(), spans.end(), [](const Span &x, const Span &y) { return x.lo < y.lo; });
        for (size_t first = 0; first < spans.size();) {
            size_t last = first + 1;
            uintptr_t end = spans[first].hi;
            bool written = spans[first].written;
            while (last < spans.size() && spans[last].lo < end) {
                end = std::max(end, spans[last].hi);
                written = written || spans[last].written;
                last++;
            }
            if (last - first >= 2 && written) {
                for (size_t k = first; k < last; k++) clash[static_cast<size_t>(spans[k].owner)] = 1;
                any_clash = true;
            }
            first = last;
        }
        for (Batch *b : batches) {
            if (b == nullptr || !any_clash) continue;
            Batch kept;
            for (size_t t = 0; t < b->param.size(); t++) {
                if (clash[static_cast<size_t>(b->index[t])]) {
                    to_rest[static_cast<size_t>(b->index[t])] = 1;
                    any_rest = true;
                    continue;
                }
                kept.numel.push_back(b->numel[t]);
                kept.param.push_back(b->param[t]);
                kept.grad.push_back(b->grad[t]);
                kept.s0.push_back(b->s0[t]);
                kept.s1.push_back(b->s1[t]);
                kept.s2.push_back(b->s2[t]);
                kept.step.push_back(b->step[t]);
                for (size_t e = 0; e < static_cast<size_t>(n_extra); e++)
                    kept.extra.push_back(b->extra[t * static_cast<size_t>(n_extra) + e]);
                kept.owners.push_back(b->owners[t]);
                kept.grads.push_back(b->grads[t]);
                kept.index.push_back(b->index[t]);
            }
            *b = std::move(kept);
        }
        for (int slot = 0; slot < kSlots; slot++) {
            Batch *b = batches[slot];
            if (b == nullptr || b->param.empty()) continue;
            stepped += static_cast<Py_ssize_t>(b->param.size());
            auto column = [&](std::vector<void *> &c, bool used) -> void *const * { return used ? c.data() : nullptr; };
            const bool has0 = key_objs[0] != Py_None, has1 = key_objs[1] != Py_None, has2 = key_objs[2] != Py_None;
            int status;
            Py_BEGIN_ALLOW_THREADS
            status = kernels[slot / kKinds](static_cast<int64_t>(b->param.size()), b->numel.data(), b->param.data(),
                                       b->grad.data(), column(b->s0, has0), column(b->s1, has1),
                                       column(b->s2, has2), column(b->step, a.steps != 0),
                                       column(b->extra, n_extra > 0), slot % kKinds, hp.data(), a.grad_inv_scale,
                                       static_cast<int>(a.nthreads));
            Py_END_ALLOW_THREADS
            if (status == 1) {
                PyErr_Format(PyExc_MemoryError, "descentlab: the fused %s kernel could not allocate its scratch space",
                             a.kernel_name);
                return nullptr;
            }
            if (status != 0) {
                PyErr_Format(PyExc_RuntimeError,
                             "descentlab: the fused %s kernel refused its arguments (status %d); nothing was changed "
                             "— please report this with impl='reference' as a workaround",
                             a.kernel_name, status);
                return nullptr;
            }
            // autograd's in-place check relies on these counters (torch.autograd.graph.increment_version)
            for (const at::Tensor &t : b->owners)
                if (!t.is_inference()) t.unsafeGetTensorImpl()->bump_version();
            if (a.grad_inv_scale != 0)
                for (const at::Tensor &t : b->grads)
                    if (!t.is_inference()) t.unsafeGetTensorImpl()->bump_version();
        }
    } catch (const std::exception &err) {
        PyErr_Format(PyExc_RuntimeError, "descentlab native gatherer: %s", err.what());
        return nullptr;
    }
    PyObject *rest = PyList_New(0);
    if (rest == nullptr) return nullptr;
    for (Py_ssize_t i = 0; any_rest && i < n; i++) {
        if (to_rest[static_cast<size_t>(i)] && PyList_Append(rest, PyList_GET_ITEM(a.params, i)) < 0) {
            Py_DECREF(rest);
            return nullptr;
        }
    }
    return Py_BuildValue("(Nn)", rest, stepped);
}

PyMethodDef methods[] = {
    {"step_group", step_group, METH_VARARGS, "Check and step a param group's tensors with a kernel (see the source)."},
    {"abi_version", [](PyObject *, PyObject *) -> PyObject * { return PyLong_FromLong(DL_GATHER_ABI_VERSION); }, METH_NOARGS,
     "The calling convention's version."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_descentlab_gather", "descentlab's native gatherer", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__descentlab_gather(void) { return PyModule_Create(&module); }
