"""``onnx2snn evaluate``: an artifact measured against its ANN (and the exact solution where known)
at one or several T: error, spikes and energy per row."""

from __future__ import annotations

from pathlib import Path

from ..saving import check_output_path
from .common import EXIT_OK, Progress, report_directory, report_timesteps, write_document, write_json


def evaluate_command(args) -> int:
    from ..evaluate import evaluate
    artifact = Path(args.model)
    if args.report_json:
        check_output_path(args.report_json, artifact)
    report_dir = report_directory(args.report, artifact)
    steps = [T for group in args.timesteps for T in group] if args.timesteps else None
    if report_dir is not None and steps is None:
        from runtimes.loading import load_onnx
        from runtimes.network import artifact_timesteps, if_layers
        from ..errors import ModelError
        own = artifact_timesteps(load_onnx(artifact, ModelError), str(artifact))
        codings = {layer["coding"] for layer in if_layers(load_onnx(artifact, ModelError))}
        steps = report_timesteps(own, "phase" if "phase" in codings else "rate")
    evaluation = evaluate(artifact, ann=args.ann, timesteps=steps, points=args.points, inputs=args.input,
                          seed=args.seed, energy_table=args.energy_table,
                          progress=None if args.quiet else Progress())
    report = evaluation.report
    v = report["validation"]
    print(f"{artifact} against {report['ann']} on {v['points']} points (calibrated for T={report['calibrated_timesteps']}; "
          f"energy compute only, x ANN on the same table):")
    models = list(report["energy"])
    print(f"{'T':>5} {'SNN vs ANN':>11} {'SNN vs exact':>13} {'spikes/sample':>14} "
          + " ".join(f"{m:>10}" for m in models))
    for row in report["sweep"]:
        exact = f"{row['rel_l2_snn_vs_exact']:.3e}" if "rel_l2_snn_vs_exact" in row else "-"
        print(f"{row['timesteps']:>5} {row['rel_l2_snn_vs_ann']:>11.3e} {exact:>13} {row['spikes_per_sample']:>14,.0f} "
              + " ".join(f"{row['energy_ratio'][m]:>9.3g}x" for m in models))
    print(f"{100 * report['spiking_mac_fraction']:.1f}% of the ANN's MACs became synaptic operations; "
          f"{len(report['analog_nodes'])} node(s) stay analog")
    if args.report_json:
        write_json(args.report_json, report)
    if report_dir is not None:
        write_document(report_dir, evaluation, artifact)
    return EXIT_OK
