"""Time Adam training steps of one PyTorch model of the modarch lab and print JSON.

Each architecture module next to this file (mlp.py, mha.py, rnn.py) provides
`build_model(kind, rules, encoder_dim, hidden_dim, ...)`, `make_batch(rules, batch_size, ...)`
and `parameter_count(model)`. One step is what modarch's Trainer runs: forward, BCE with
logits averaged over every output, backward, optional gradient-norm clipping, and an Adam
update. Batches are drawn fresh before every step, outside the timed region.

Example (Debian's python3-torch lives in /usr/bin/python3):

    /usr/bin/python3 bench/torch/step.py --arch mlp --kind modular --rules 8 \
        --encoder-dim 64 --hidden-dim 256 --batch-size 256 --steps 200

prints one line such as
    {"arch": "mlp", "kind": "modular", ..., "ms_per_step": 5.3, "parameter_count": 142793, ...}.
Options for one architecture only (for example a sequence length) go through
`--set name=value`; each is passed to whichever of build_model and make_batch accepts it.
"""

import argparse
import importlib.util
import inspect
import json
import os
import sys
import time
from pathlib import Path

ARCHITECTURES = ("mlp", "mha", "rnn")


def load_architecture(arch):
    """Import bench/torch/<arch>.py as a module, or exit with status 2 when it does not exist."""
    path = Path(__file__).resolve().parent / f"{arch}.py"
    if not path.exists():
        print(f"step.py: no PyTorch models for the {arch!r} architecture ({path} not found)", file=sys.stderr)
        sys.exit(2)
    spec = importlib.util.spec_from_file_location(f"modarch_torch_{arch}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_value(text):
    """Read an integer, float, true/false, or else keep the string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def route_options(options, model_function, batch_function):
    """Split `options` into keyword arguments of `model_function` and of `batch_function`.

    An option accepted by both goes to both. Raises SystemExit naming any option that neither
    accepts.
    """
    model_names = set(inspect.signature(model_function).parameters)
    batch_names = set(inspect.signature(batch_function).parameters)
    unknown = [name for name in options if name not in model_names and name not in batch_names]
    if unknown:
        accepted = sorted((model_names | batch_names) - {"kind", "rules", "encoder_dim", "hidden_dim", "batch_size"})
        raise SystemExit(f"step.py: invalid --set option(s) {unknown}; this architecture accepts {accepted}")
    model_options = {name: value for name, value in options.items() if name in model_names}
    batch_options = {name: value for name, value in options.items() if name in batch_names}
    return model_options, batch_options


def time_steps(args, architecture, model_options, batch_options):
    """Run warm-up and timed steps; return the result dictionary."""
    model = architecture.build_model(args.kind, args.rules, args.encoder_dim, args.hidden_dim, **model_options)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_total = torch.zeros(())

    def step(batch):
        inputs, rules, targets = batch
        optimizer.zero_grad(set_to_none=True)
        output, _ = model(inputs, rules)
        loss = F.binary_cross_entropy_with_logits(output, targets)
        loss.backward()
        if args.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        optimizer.step()
        return loss.detach()

    for _ in range(args.warmup):
        loss_total += step(architecture.make_batch(args.rules, args.batch_size, **batch_options))

    wall = 0.0
    cpu = 0.0
    sampling = 0.0
    for _ in range(args.steps):
        started = time.perf_counter()
        batch = architecture.make_batch(args.rules, args.batch_size, **batch_options)
        sampled = time.perf_counter()
        cpu_started = time.process_time()
        loss_total += step(batch)
        cpu += time.process_time() - cpu_started
        finished = time.perf_counter()
        sampling += sampled - started
        wall += finished - sampled

    return {
        "ms_per_step": 1000 * wall / args.steps,
        "cpu_ms_per_step": 1000 * cpu / args.steps,
        "sampling_ms_per_step": 1000 * sampling / args.steps,
        "steps": args.steps,
        "mean_loss": float(loss_total) / (args.warmup + args.steps),
        "parameter_count": architecture.parameter_count(model),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=ARCHITECTURES, help="architecture module to load")
    parser.add_argument("--kind", required=True, help="model kind: monolithic, modular, modular-op or gt-modular")
    parser.add_argument("--rules", type=int, default=8, help="number of rules R (default 8)")
    parser.add_argument("--encoder-dim", type=int, default=64, help="encoder width e, or token dimension D for MHA (default 64)")
    parser.add_argument("--hidden-dim", type=int, default=256, help="h (MLP), attention dimension A (MHA) or LSTM size n (RNN) (default 256)")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per step (default 256)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before timing (default 20)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    parser.add_argument("--clip-norm", type=float, default=None, help="clip the gradient norm to this value (default: no clipping)")
    parser.add_argument("--threads", type=int, default=1, help="threads of torch and of its BLAS library (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for weights and samples (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="extra option for build_model or make_batch; repeatable")
    parser.add_argument("--count-only", action="store_true", help="print the parameter count without training")
    args = parser.parse_args()

    # torch.set_num_threads does not reach the BLAS library of Debian's python3-torch 1.13
    # (BLAS_INFO=generic), which started its own threads and used a second core. Its thread
    # count is read from the environment when it loads, so torch is imported only now.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    global torch, F
    import torch
    import torch.nn.functional as F

    options = {}
    for item in args.set:
        name, separator, value = item.partition("=")
        if not separator or not name:
            parser.error(f"invalid --set {item!r}: expected NAME=VALUE")
        options[name] = parse_value(value)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    architecture = load_architecture(args.arch)
    model_options, batch_options = route_options(options, architecture.build_model, architecture.make_batch)

    result = {"arch": args.arch, "kind": args.kind, "rules": args.rules, "encoder_dim": args.encoder_dim,
              "hidden_dim": args.hidden_dim, "batch_size": args.batch_size, "options": options,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.count_only:
        model = architecture.build_model(args.kind, args.rules, args.encoder_dim, args.hidden_dim, **model_options)
        result["parameter_count"] = architecture.parameter_count(model)
    else:
        result.update(time_steps(args, architecture, model_options, batch_options))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
