"""``onnx2snn train``: a spiking network trained with forward-only gradients (or BPTT) and saved as an
artifact, progress as a bar in forward-pass equivalents."""

from __future__ import annotations

from pathlib import Path

from ..saving import check_output_path
from .common import EXIT_OK, Progress, write_json


def train_command(args) -> int:
    from ..training import train_network
    from ..training.specification import load_specification
    spec = load_specification(args.spec)
    output = Path(args.output) if args.output else Path(f"{spec.task.name}.snn.onnx")
    check_output_path(output, args.spec)
    if args.report_json:
        check_output_path(args.report_json, args.spec)

    bar = Progress()

    def progress(record: dict) -> None:
        bar("training (FPE)", int(record["fpe"]), int(args.budget),
            f"iteration {record['iteration']}, loss {record['loss']:.3e}, test {record['test_rel_l2']:.2e}")

    trained = train_network(spec, estimator=args.estimator, budget_fpe=args.budget, timesteps=args.timesteps,
                            seed=args.seed, directions=args.directions, learning_rate=args.learning_rate,
                            surrogate=args.surrogate, sigma=args.sigma, progress=None if args.quiet else progress)
    trained.save(output)
    report = trained.report
    if args.report_json:
        write_json(args.report_json, report)
    print(f"wrote {output}  ({report['task']}, {report['estimator']}, T={report['timesteps']}, "
          f"{report['parameters']:,} parameters)")
    print(f"test relative L2 vs exact: {report['test_rel_l2']:.3e} (artifact in the numpy runtime: "
          f"{report['artifact_test_rel_l2']:.3e})")
    print(f"budget: {report['fpe_spent']:,.0f} forward-pass equivalents in {report['iterations']:,} steps, "
          f"{report['seconds']:.1f} s; {report['spikes_per_sample']:,.0f} spikes per test sample")
    return EXIT_OK
