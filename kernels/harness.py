"""Kernel benchmark harness: check against the reference first, then time (tritonbench-style).

A kernel benchmark is one module in this package that registers a `KernelBench` subclass with
`@register("kernel", name)`. It brings the Triton implementation, a plain PyTorch reference, input
makers for named shape sets ("small" runs in Triton's CPU interpreter, "full" are the real GPU
shapes), the FLOPs and bytes one call must do and move, and baselines measured in this process.
The harness owns everything else, so a new kernel is a new file and never a change here.

On CUDA each callable is timed with `triton.testing.do_bench` (warm-up, 256 MB L2 flush before
every call, median and interquartile range over >=100 ms of calls) and, where the callable can be
captured, with `do_bench_cudagraph` (host overhead removed). Without CUDA the kernels run in the
interpreter for correctness only: timings are marked `interpreted: true, comparable: false`.

    python -m sparsebench.kernels.harness --kernel quant_pack \
        --hardware configs/hardware/cpu.yaml --out results/kernels/cpu/quant_pack.json
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from sparsebench import atomic, provenance, registry

Outputs = dict[str, torch.Tensor]
Inputs = dict[str, Any]

# (rtol, atol) per compute dtype: what a correct kernel reaches against an fp32 reference.
TOLERANCES = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (3e-2, 3e-2),
}
_NOT_KERNELS = {"harness"}
_PREFIX = "sparsebench.kernels."
_HARNESS = {_PREFIX + "harness"}
_SMI_QUERY = "clocks.sm,clocks.mem,power.draw,temperature.gpu"


class KernelCheckError(RuntimeError):
    """The Triton kernel disagreed with its reference: nothing is timed."""


class KernelBench:
    """One kernel benchmark. Subclasses set `shapes` and override the methods below."""

    shapes: dict[str, list[dict[str, Any]]] = {"small": [], "full": []}
    # Set when the kernel computes in fp32 whatever the input dtype (quantizers, selection).
    tolerance: tuple[float, float] | None = None

    def make_inputs(
        self, shape: dict[str, Any], device: torch.device, dtype: torch.dtype, gen: torch.Generator
    ) -> Inputs:
        raise NotImplementedError

    def triton(self, inputs: Inputs) -> Outputs:
        raise NotImplementedError

    def reference(self, inputs: Inputs) -> Outputs:
        raise NotImplementedError

    def baselines(self, device: torch.device) -> dict[str, Callable[[Inputs], Any]]:
        """Competing implementations timed next to the kernel (same inputs, same process)."""
        return {}

    def flops(self, shape: dict[str, Any]) -> float:
        """Useful floating-point operations per call; 0 for memory-bound kernels."""
        return 0.0

    def baseline_flops(self, shape: dict[str, Any]) -> dict[str, float]:
        """FLOPs of baselines that do other work than the kernel (a dense one beside a sparse
        kernel), so that their TFLOP/s are their own; the others are credited `flops`."""
        return {}

    def bytes_moved(self, shape: dict[str, Any], dtype: torch.dtype) -> float:
        """Bytes a call must read plus write from/to memory (compressed sizes where compressed)."""
        raise NotImplementedError

    def check(self, out: Outputs, ref: Outputs, inputs: Inputs, dtype: torch.dtype) -> dict:
        """Compare every output tensor with the reference; `ok` decides whether timing runs."""
        rtol, atol = self.tolerance or TOLERANCES[dtype]
        return compare(out, ref, rtol, atol)


def compare(out: Outputs, ref: Outputs, rtol: float, atol: float) -> dict:
    """Max abs/rel and relative Frobenius error per output, and the allclose verdict."""
    report: dict[str, Any] = {"ok": True, "rtol": rtol, "atol": atol, "outputs": {}}
    for key, expected in ref.items():
        got = out[key].double()
        want = expected.double()
        if got.shape != want.shape:
            report["ok"] = False
            report["outputs"][key] = {"error": f"shape {tuple(got.shape)} != {tuple(want.shape)}"}
            continue
        diff = (got - want).abs()
        scale = want.abs().max().clamp_min(1e-30)
        ok = bool(torch.all(diff <= atol + rtol * want.abs()))
        report["outputs"][key] = {
            "max_abs_err": float(diff.max()) if diff.numel() else 0.0,
            "max_rel_err": float(diff.max() / scale) if diff.numel() else 0.0,
            "rel_fro_err": float(diff.norm() / want.norm().clamp_min(1e-30)),
            "ok": ok,
        }
        report["ok"] = report["ok"] and ok
    return report


def load_kernels(device: str) -> None:
    """Import every kernel module; on CPU first switch Triton to its interpreter."""
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        loaded = [m for m in sys.modules if m.startswith(_PREFIX) and m not in _HARNESS]
        if loaded:
            raise RuntimeError(
                "kernels were imported without TRITON_INTERPRET=1; set it before importing "
                f"triton kernels to run them on CPU (already imported: {', '.join(loaded)})"
            )
        os.environ["TRITON_INTERPRET"] = "1"
    package = importlib.import_module("sparsebench.kernels")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_KERNELS:
            importlib.import_module(f"sparsebench.kernels.{info.name}")


def get_bench(kernel: str) -> KernelBench:
    return registry.get("kernel", kernel).obj()


def run_benchmark(
    kernel: str, hardware: dict[str, Any], out_path: Path, shape_set: str | None = None
) -> dict:
    """Check then time one kernel on every shape of its set; write and return the JSON document."""
    device_name = hardware.get("device", "cpu")
    load_kernels(device_name)
    if device_name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"hardware profile {hardware.get('name')!r} needs CUDA, none found")
    device = torch.device(device_name)
    interpreted = device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    bench = get_bench(kernel)
    shape_set = shape_set or ("small" if interpreted else "full")
    if shape_set not in bench.shapes:
        raise ValueError(f"kernel {kernel!r} has no shape set {shape_set!r}: {list(bench.shapes)}")
    gpu_before = _nvidia_smi() if device.type == "cuda" else None
    if not interpreted:
        hardware = {**hardware, "peaks": {**hardware.get("peaks", {}), "copy_gbps": copy_gbps()}}
    cases = [
        run_case(bench, shape, device, hardware, interpreted) for shape in bench.shapes[shape_set]
    ]
    document = {
        "kernel": kernel,
        "hardware": hardware.get("name"),
        "shape_set": shape_set,
        "status": "ok" if all(c["correctness"]["ok"] for c in cases) else "wrong",
        "interpreted": interpreted,
        "cases": cases,
        "peaks": hardware.get("peaks", {}),
        "environment": environment(device, gpu_before),
    }
    atomic.write_json(Path(out_path), document)
    if document["status"] != "ok":
        bad = [c["shape"] for c in cases if not c["correctness"]["ok"]]
        raise KernelCheckError(f"kernel {kernel!r} disagrees with its reference at {bad}")
    return document


def check_case(
    bench: KernelBench, shape: dict[str, Any], device: torch.device, hardware: dict[str, Any]
) -> tuple[dict[str, Any], Inputs]:
    """Fresh seeded inputs, the kernel against its reference; returns the case record and inputs."""
    dtype = getattr(torch, shape.get("dtype", hardware.get("dtype", "float32")))
    gen = torch.Generator(device=device).manual_seed(0)
    inputs = bench.make_inputs(shape, device, dtype, gen)
    correctness = bench.check(bench.triton(inputs), bench.reference(inputs), inputs, dtype)
    case = {
        "shape": shape,
        "dtype": str(dtype).removeprefix("torch."),
        "flops": bench.flops(shape),
        "bytes": bench.bytes_moved(shape, dtype),
        "correctness": correctness,
    }
    return case, inputs


def run_case(
    bench: KernelBench,
    shape: dict[str, Any],
    device: torch.device,
    hardware: dict[str, Any],
    interpreted: bool,
) -> dict:
    """Correctness first; timing only when correct and on a real GPU."""
    case, inputs = check_case(bench, shape, device, hardware)
    if interpreted or not case["correctness"]["ok"]:
        case["timings"] = {"interpreted": interpreted, "comparable": False}
        return case
    case["timings"] = time_all(bench, inputs, device, case, hardware.get("peaks", {}))
    return case


def time_all(
    bench: KernelBench,
    inputs: Inputs,
    device: torch.device,
    case: dict[str, Any],
    peaks: dict[str, float],
) -> dict:
    """Time the kernel and each baseline; derive rates, fraction of peak and speedups."""
    timings: dict[str, Any] = {"interpreted": False, "comparable": True}
    timings["triton"] = rates(time_call(lambda: bench.triton(inputs)), case, peaks)
    timings["baselines"] = {}
    own_flops = bench.baseline_flops(case["shape"])
    for name, fn in bench.baselines(device).items():
        work = {**case, "flops": own_flops.get(name, case["flops"])}
        try:
            timings["baselines"][name] = rates(time_call(lambda f=fn: f(inputs)), work, peaks)
        except Exception as err:  # a baseline the platform lacks is recorded, not fatal
            timings["baselines"][name] = {"error": f"{type(err).__name__}: {err}"[:500]}
    mine = timings["triton"]["ms_median"]
    timings["speedup_vs"] = {
        name: base["ms_median"] / mine
        for name, base in timings["baselines"].items()
        if "ms_median" in base
    }
    return timings


def time_call(fn: Callable[[], Any], repeats: int = 2) -> dict[str, Any]:
    """Eager time (do_bench: L2 flushed, host included) and CUDA-graph time where capturable.

    The whole measurement is repeated; the reported quantiles are their means and
    `run_spread` (max - min of the repeat medians over their mean) is the noise to beat."""
    import triton.testing

    q = [0.25, 0.5, 0.75]
    eager = [triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=q) for _ in range(repeats)]
    out = _summarise(eager, "ms")
    try:
        graph = [
            triton.testing.do_bench_cudagraph(fn, rep=100, quantiles=q) for _ in range(repeats)
        ]
        out.update(_summarise(graph, "graph_ms"))
    except Exception:  # host syncs or allocator use make some callables uncapturable
        out["graph_ms_median"] = None
    return out


def copy_gbps(n_bytes: int = 2**30) -> float:
    """Device-to-device copy bandwidth measured here, read plus written bytes: the practical
    ceiling a memory-bound kernel is judged against (datasheet peaks are not reachable)."""
    import triton.testing

    src = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200)
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def _summarise(runs: list[list[float]], prefix: str) -> dict[str, Any]:
    medians = [run[1] for run in runs]
    mean = sum(medians) / len(medians)
    return {
        f"{prefix}_q25": sum(run[0] for run in runs) / len(runs),
        f"{prefix}_median": mean,
        f"{prefix}_q75": sum(run[2] for run in runs) / len(runs),
        f"{prefix}_repeat_medians": medians,
        f"{prefix}_run_spread": (max(medians) - min(medians)) / mean,
    }


def rates(t: dict[str, Any], case: dict[str, Any], peaks: dict[str, float]) -> dict[str, Any]:
    seconds = t["ms_median"] * 1e-3
    tflops = case["flops"] / seconds / 1e12 if case["flops"] else None
    gbps = case["bytes"] / seconds / 1e9
    return {
        **t,
        "tflops": tflops,
        "gbps": gbps,
        "frac_peak_tflops": tflops / peaks["tflops"] if tflops and "tflops" in peaks else None,
        "frac_peak_gbps": gbps / peaks["gbps"] if "gbps" in peaks else None,
        "frac_copy_gbps": gbps / peaks["copy_gbps"] if "copy_gbps" in peaks else None,
    }


def environment(device: torch.device, gpu_before: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"versions": provenance.versions(), "device": device.type}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["nvidia_smi"] = {"query": _SMI_QUERY, "before": gpu_before, "after": _nvidia_smi()}
    else:
        info["device_name"] = provenance.cpu_model()
    return info


def _nvidia_smi() -> str | None:
    """Clocks, power and temperature, recorded before and after (they move timings by 5-10%)."""
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={_SMI_QUERY}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--hardware", required=True, type=Path, help="hardware profile YAML")
    parser.add_argument("--out", required=True, type=Path, help="result JSON path")
    parser.add_argument("--shapes", default=None, help="shape set (default: small on CPU)")
    args = parser.parse_args(argv)
    hardware = yaml.safe_load(args.hardware.read_text())
    torch.set_num_threads(int(hardware.get("threads", 1)))
    try:
        document = run_benchmark(args.kernel, hardware, args.out, args.shapes)
    except KernelCheckError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.kernel}: {document['status']}, {len(document['cases'])} shapes -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
