"""Rewrites a .cu file into C++ that the host compiler accepts with include/cuda_runtime.h.

Only three CUDA-only syntaxes occur in csrc/: kernel launches and shared memory, static and
dynamically sized. A launch `kernel<T, 3><<<grid, block, smem, stream>>>(args)` becomes
`::emu::launch("kernel<T, 3>", grid, block, smem, stream)(kernel<T, 3>, args)`;
`extern __shared__ T name[];` becomes a pointer to the emulator's per-block buffer, and
`__shared__ T name[N];` a reference into the block's arena of static shared variables (both
inside a function only, which is where csrc/ declares them).
Usage: python translate.py IN.cu OUT.cpp
"""
import re
import sys

SMEM = re.compile(r"extern\s+__shared__\s+(?:(?:alignas|__align__)\(\d+\)\s+)?([\w:<>\s]+?)\s+(\w+)\s*\[\s*\]\s*;")
STATIC_SMEM = re.compile(r"__shared__\s+([\w:<>,\s]+?)\s+(\w+)\s*((?:\[[^\]]*\])*)\s*;")
IDENT = re.compile(r"[\w:]")


def kernel_start(src: str, end: int) -> int:
    """Start of the kernel expression that ends just before `end` (name plus template args)."""
    i = end
    while i > 0 and src[i - 1].isspace():  # `kernel <<<...>>>` is legal too
        i -= 1
    if src[i - 1] == ">":
        depth = 0
        while i > 0:
            i -= 1
            if src[i] == ">":
                depth += 1
            elif src[i] == "<":
                depth -= 1
                if depth == 0:
                    break
        else:
            raise ValueError("unbalanced template arguments before <<<")
    while i > 0 and IDENT.match(src[i - 1]):
        i -= 1
    return i


def translate(src: str) -> str:
    src = SMEM.sub(lambda m: f"{m[1]}* {m[2]} = reinterpret_cast<{m[1]}*>(::emu::dynamic_smem());", src)
    src = STATIC_SMEM.sub(
        lambda m: f'auto& {m[2]} = ::emu::shared_var<{m[1]}{m[3]}>("{m[2]}");', src)
    out, pos = [], 0
    while True:
        start = src.find("<<<", pos)
        if start < 0:
            break
        k0 = kernel_start(src, start)
        close = src.find(">>>", start)
        paren = src.index("(", close)
        if src[close + 3:paren].strip():
            raise ValueError(f"unexpected text between >>> and ( at offset {close}")
        kernel = src[k0:start].strip()
        config = src[start + 3:close]
        after = src[paren + 1:].lstrip()
        sep = "" if after.startswith(")") else ", "
        out.append(src[pos:k0])
        out.append(f'::emu::launch("{kernel}", {config})({kernel}{sep}')
        pos = paren + 1
    out.append(src[pos:])
    return "".join(out)


if __name__ == "__main__":
    text = open(sys.argv[1], encoding="utf-8").read()
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{sys.argv[1]}"\n')
        f.write(translate(text))
