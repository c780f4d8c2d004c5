#!/usr/bin/env python3
"""Generate the C-ABI tables of librados.so.2 (crate shale-rados) and librbd.so.1 (shale-rbd).

Inputs (committed under crates/rados/abi/, copied from the ABI investigation):
  librados.h.prototypes.txt, librbd.h.prototypes.txt   one preprocessed C prototype per line
  extra-prototypes.txt                                 exported but undeclared (rados_tmap_*)
  librados.so.2.exports.txt, librbd.so.1.exports.txt   symbol<TAB>version of the real libraries

Outputs (committed, so builds never need python):
  crates/rados/src/generated.rs      -ENOSYS stubs for every entry point without a hand-written
                                     implementation, compile-time prototype checks for those
                                     with one, and the .symver table of the versioned symbols
  crates/rbd/src/generated.rs        librbd.so.1: every rbd_X forwards to shale_rbd_X
  crates/rbd/abi/librados-link-stub.c  a tiny librados.so.2 that the build links librbd.so.1
                                     against (NEEDED librados.so.2; never installed)

Entry points of librados.so.2:
  rados_X                 unversioned C symbol, Rust fn `rados_X`
  rados_X@@LIBRADOS_14.2.0  Rust fn `shale_rados_X_v14_2_0`; its Base twin `shale_rados_X_base`
  shale_rbd_X             the implementation of rbd_X (librbd.so.1 forwards to it)

Versioned entry points must be defined next to their `.symver` lines (the assembler needs the
symbol in the same object), so their hand-written implementation is a non-exported
`pub(crate) unsafe extern "C" fn impl_shale_rados_X_v14_2_0` (or `..._base`) and generated.rs
gets an exported forwarder `shale_rados_X_v14_2_0` that calls it.

A function counts as implemented when a hand-written file under crates/rados/src (anything but
generated.rs) defines it as `#[no_mangle] pub [unsafe] extern "C" fn NAME`. Rerun this script
after adding or removing one:   python3 scripts/gen-ffi.py   (or --check to verify only).
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RADOS = os.path.join(ROOT, "crates", "rados")
RBD = os.path.join(ROOT, "crates", "rbd")
ABI = os.path.join(RADOS, "abi")

RUST_KEYWORDS = {
    "type", "ref", "fn", "in", "mod", "self", "match", "move", "loop", "impl", "use", "where",
    "struct", "enum", "trait", "let", "mut", "box", "crate", "dyn", "async", "await", "final",
    "override", "priv", "macro", "yield", "try", "gen",
}

PRIMITIVES = {
    "void": "c_void",
    "char": "c_char",
    "signed char": "c_schar",
    "unsigned char": "u8",
    "short": "c_short",
    "unsigned short": "c_ushort",
    "int": "c_int",
    "unsigned": "c_uint",
    "unsigned int": "c_uint",
    "long": "c_long",
    "unsigned long": "c_ulong",
    "size_t": "usize",
    "ssize_t": "isize",
    "int8_t": "i8",
    "uint8_t": "u8",
    "int16_t": "i16",
    "uint16_t": "u16",
    "int32_t": "i32",
    "uint32_t": "u32",
    "int64_t": "i64",
    "uint64_t": "u64",
    "_Bool": "bool",
    "bool": "bool",
    "float": "f32",
    "double": "f64",
}


class Proto:
    def __init__(self, name, ret, params, line):
        self.name = name
        self.ret = ret  # Rust type string, or None for void
        self.params = params  # list of (rust_name, rust_type)
        self.line = line


def split_top(s, sep=","):
    """Split at `sep` outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out]


def rust_type_of(decl_tokens):
    """Map the tokens of a C type (no declarator name) to a Rust type."""
    base, ptr_consts, seen_ptr, base_const = [], [], False, False
    for tok in decl_tokens:
        if tok == "*":
            ptr_consts.append(False)
            seen_ptr = True
        elif tok == "const":
            if seen_ptr:
                ptr_consts[-1] = True
            else:
                base_const = True
        elif tok == "struct":
            continue
        else:
            if seen_ptr:
                raise ValueError("type name after '*': %r" % decl_tokens)
            base.append(tok)
    name = " ".join(base)
    rust = PRIMITIVES.get(name, name)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rust):
        raise ValueError("unknown C type %r" % name)
    # Level i's pointee is level i-1; its qualifier decides *const or *mut.
    quals = [base_const] + ptr_consts
    for i in range(len(ptr_consts)):
        rust = "*%s %s" % ("const" if quals[i] else "mut", rust)
    return rust


def tokenize(s):
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\*|\[\]|\S", s)


def parse_param(text, index):
    """Return (name, rust_type) for one C parameter."""
    fp = re.fullmatch(r"(.*)\(\s*\*\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\)\s*\((.*)\)", text)
    if fp:
        ret_c, name, args = fp.group(1).strip(), fp.group(2), fp.group(3)
        ret = None if ret_c == "void" else rust_type_of(tokenize(ret_c))
        arg_types = [] if args.strip() in ("", "void") else [
            parse_param(a, j)[1] for j, a in enumerate(split_top(args))
        ]
        rust = 'Option<unsafe extern "C" fn(%s)%s>' % (
            ", ".join(arg_types), "" if ret is None else " -> " + ret)
        return (name or "arg%d" % index), rust
    toks = tokenize(text)
    array = False
    if toks and toks[-1] == "[]":
        array = True
        toks = toks[:-1]
    name = None
    type_words = [t for t in toks if t not in ("*", "const", "struct")]
    if (len(type_words) >= 2 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", toks[-1])
            and " ".join(type_words) not in PRIMITIVES):
        name = toks[-1]
        toks = toks[:-1]
    if array:
        toks = toks + ["*"]
    return (name or "arg%d" % index), rust_type_of(toks)


def parse_proto(line):
    line = line.strip()
    m = re.fullmatch(r"(.*?)\b([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*;", line)
    if not m:
        raise ValueError("cannot parse prototype: %s" % line)
    ret_c, name, args = m.group(1).strip(), m.group(2), m.group(3)
    if "..." in args:
        raise ValueError("variadic prototype, needs a hand-written wrapper: %s" % line)
    ret = None if ret_c == "void" else rust_type_of(tokenize(ret_c))
    params = []
    if args.strip() not in ("", "void"):
        for i, a in enumerate(split_top(args)):
            pname, ptype = parse_param(a, i)
            if pname in RUST_KEYWORDS:
                pname += "_"
            params.append((pname, ptype))
    return Proto(name, ret, params, line)


def load_protos(*files):
    protos = {}
    for f in files:
        with open(os.path.join(ABI, f)) as fh:
            for line in fh:
                if line.strip():
                    p = parse_proto(line)
                    protos.setdefault(p.name, p)  # rados_mgr_command is declared twice
    return protos


def load_exports(f):
    out = []
    with open(os.path.join(ABI, f)) as fh:
        for line in fh:
            if line.strip():
                sym, _, ver = line.rstrip("\n").partition("\t")
                if ver.startswith("("):
                    continue  # the hidden Base twin of a versioned symbol, generated with it
                out.append((sym, ver))
    return out


IMPL_PAT = re.compile(
    r"pub\(crate\)\s+unsafe\s+extern\s+\"C\"\s+fn\s+impl_(shale_rados_[A-Za-z0-9_]+)")


def implemented_functions():
    """Map name -> Rust path of every hand-written #[no_mangle] extern "C" fn, and of every
    `impl_<versioned entry>` (keyed by the entry name, marked with a leading '@')."""
    found = {}
    src = os.path.join(RADOS, "src")
    pat = re.compile(
        r"#\[(?:unsafe\()?no_mangle\)?\]\s*(?:#\[[^\]]*\]\s*)*"
        r"pub\s+(?:unsafe\s+)?extern\s+\"C\"\s+fn\s+([A-Za-z_][A-Za-z0-9_]*)")
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            if not f.endswith(".rs") or path == os.path.join(src, "generated.rs"):
                continue
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib"):
                rel = rel[:-1]
            module = "::".join(["crate"] + rel)
            with open(path) as fh:
                text = fh.read()
                for m in pat.finditer(text):
                    found[m.group(1)] = module
                for m in IMPL_PAT.finditer(text):
                    found["@" + m.group(1)] = module
    return found


def sig(p, names=True, unused=False):
    parts = []
    for n, t in p.params:
        parts.append(("%s%s: %s" % ("_" if unused else "", n, t)) if names else t)
    ret = "" if p.ret is None else " -> " + p.ret
    return "(%s)%s" % (", ".join(parts), ret)


# Count and length outputs of a stub that fails read as zero: bindings (python3-rbd) hand an
# uninitialised array and its count to the matching cleanup even after an error.
COUNT_OUTPUTS = ("*mut usize", "*mut c_int")


def stub(entry, p, c_name):
    if p.ret is None:
        body = 'crate::guard::not_implemented::<()>("%s");' % c_name
    else:
        body = 'crate::guard::not_implemented("%s")' % c_name
    counts = [n for n, t in p.params if t in COUNT_OUTPUTS] if p.ret is not None else []
    if counts:
        zero = "".join("    crate::guard::zero_out(%s);\n" % n for n in counts)
        params = ", ".join("%s%s: %s" % ("" if n in counts else "_", n, t) for n, t in p.params)
        ret = " -> " + p.ret
        return ("#[no_mangle]\npub unsafe extern \"C\" fn %s(%s)%s {\n"
                "    // SAFETY: a count output is NULL or writable (caller contract).\n"
                "    unsafe {\n    %s    }\n    %s\n}\n") % (
            entry, params, ret, zero.replace("\n    ", "\n        "), body)
    return "#[no_mangle]\npub unsafe extern \"C\" fn %s%s {\n    %s\n}\n" % (
        entry, sig(p, unused=True), body)


HEADER = """// @generated by scripts/gen-ffi.py from crates/rados/abi/*.txt. Do not edit by hand:
// add a hand-written implementation elsewhere in this crate and rerun the generator.
"""


def gen_rados(protos, rados_exports, rbd_exports, implemented):
    entries = []  # (entry_name, proto, c_name)
    symver = []
    for sym, ver in rados_exports:
        p = protos[sym]
        if ver == "Base":
            entries.append((sym, p, sym))
        else:
            tag = ver.replace(".", "_").replace("LIBRADOS_", "v")
            new, old = "shale_%s_%s" % (sym, tag), "shale_%s_base" % sym
            entries.append((new, p, sym))
            entries.append((old, p, sym))
            symver.append('    ".symver %s, %s@@%s",' % (new, sym, ver))
            symver.append('    ".symver %s, %s@",' % (old, sym))
    for sym, _ in rbd_exports:
        entries.append(("shale_" + sym, protos[sym], sym))

    names = {e[0] for e in entries}
    forwarded = {n[1:]: m for n, m in implemented.items() if n.startswith("@")}
    implemented = {n: m for n, m in implemented.items() if not n.startswith("@")}
    stray = sorted(n for n in list(implemented) + list(forwarded) if n not in names
                   and (n.startswith("rados_") or n.startswith("shale_")))
    if stray:
        raise SystemExit("hand-written functions that are no C entry point: %s" % stray)

    out = [HEADER, """//! Generated entry points of librados.so.2: `-ENOSYS` stubs, prototype checks, symbol versions.
//!
//! SAFETY (for every `unsafe extern "C" fn` below): a stub never dereferences its arguments;
//! it only returns the "not implemented" value of its return type (`-ENOSYS`, 0 or NULL).
#![allow(
    clippy::missing_safety_doc,
    clippy::too_many_arguments,
    unused_imports,
    non_snake_case
)]

use crate::types::*;
use core::ffi::{c_char, c_int, c_uint, c_void};
"""]
    done = sorted(e for e in entries if e[0] in implemented)
    todo = [e for e in entries if e[0] not in implemented and e[0] not in forwarded]
    fwd = sorted(e for e in entries if e[0] in forwarded)
    out.append("// ---- prototype checks of the %d hand-written entry points ----\n" % len(done))
    for entry, p, _ in done:
        ftype = 'unsafe extern "C" fn%s' % sig(p, names=False)
        out.append("const _: %s = %s::%s;\n" % (ftype, implemented[entry], entry))
    if symver:
        out.append("\n// ---- symbol versions (LIBRADOS_14.2.0 default + hidden-ABI Base twin) ----\n")
        out.append("core::arch::global_asm!(\n%s\n);\n" % "\n".join(symver))
    if fwd:
        out.append("\n// ---- forwarders of the hand-written versioned entry points ----\n\n")
    for entry, p, _ in fwd:
        args = ", ".join(n for n, _ in p.params)
        out.append("#[no_mangle]\npub unsafe extern \"C\" fn %s%s {\n    // SAFETY: same prototype, arguments passed on unchanged.\n    unsafe { %s::impl_%s(%s) }\n}\n\n" % (
            entry, sig(p), forwarded[entry], entry, args))
    out.append("\n// ---- %d stubs ----\n\n" % len(todo))
    for entry, p, c_name in todo:
        out.append(stub(entry, p, c_name))
        out.append("\n")
    return "".join(out).rstrip("\n") + "\n", len(done), len(todo)


def gen_rbd(protos, rbd_exports):
    out = [HEADER, """//! Generated forwarders of librbd.so.1: every `rbd_X` calls `shale_rbd_X` in librados.so.2.
//!
//! SAFETY (for every `unsafe` block below): the callee is declared with the very prototype of
//! the caller (both generated from librbd.h), and the arguments are passed on unchanged, so
//! the C caller's contract carries over to the implementation in librados.so.2.
#![allow(
    clippy::missing_safety_doc,
    clippy::too_many_arguments,
    unused_imports,
    non_snake_case
)]

use crate::types::*;
use core::ffi::{c_char, c_int, c_uint, c_void};

extern "C" {
"""]
    for sym, _ in rbd_exports:
        out.append("    fn shale_%s%s;\n" % (sym, sig(protos[sym])))
    out.append("}\n\n")
    for sym, _ in rbd_exports:
        p = protos[sym]
        args = ", ".join(n for n, _ in p.params)
        out.append("#[no_mangle]\npub unsafe extern \"C\" fn %s%s {\n"
                   "    // SAFETY: see the module header.\n"
                   "    unsafe { shale_%s(%s) }\n}\n\n" % (sym, sig(p), sym, args))
    c = ["/* @generated by scripts/gen-ffi.py. Link-time stand-in for librados.so.2: it only\n"
         " * gives librbd.so.1 its NEEDED entry and resolves the shale_rbd_* names at link\n"
         " * time. At run time the real (shale-rados) librados.so.2 is loaded instead. */\n"]
    for sym, _ in rbd_exports:
        c.append("void shale_%s(void) {}\n" % sym)
    return "".join(out).rstrip("\n") + "\n", "".join(c)


def main():
    check = "--check" in sys.argv[1:]
    protos = load_protos("librados.h.prototypes.txt", "librbd.h.prototypes.txt",
                         "extra-prototypes.txt")
    rados_exports = load_exports("librados.so.2.exports.txt")
    rbd_exports = load_exports("librbd.so.1.exports.txt")
    missing = [s for s, _ in rados_exports + rbd_exports if s not in protos]
    if missing:
        raise SystemExit("exported without a prototype: %s" % missing)
    implemented = implemented_functions()
    rados_rs, n_done, n_todo = gen_rados(protos, rados_exports, rbd_exports, implemented)
    rbd_rs, stub_c = gen_rbd(protos, rbd_exports)
    outputs = {
        os.path.join(RADOS, "src", "generated.rs"): rados_rs,
        os.path.join(RBD, "src", "generated.rs"): rbd_rs,
        os.path.join(RBD, "abi", "librados-link-stub.c"): stub_c,
    }
    stale = []
    for path, text in outputs.items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(os.path.relpath(path, ROOT))
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as fh:
                    fh.write(text)
    print("%d rados + %d rbd exports; %d hand-written, %d stubs; %s" % (
        len(rados_exports), len(rbd_exports), n_done, n_todo,
        ("stale: " + ", ".join(stale)) if stale else "up to date"))
    if check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
