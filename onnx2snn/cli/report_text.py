"""A conversion report as text on stdout: the summary, per-layer table, activations that spike and the
energy table (each cost model's SNN and ANN energy per sample, compute only)."""

from __future__ import annotations

from pathlib import Path


def print_report(report: dict, output: Path) -> None:
    """The report on stdout; the time is the report's ``timing_s`` total (validation included, as said)."""
    v, timing = report["validation"], report["timing_s"]
    coding = f"coding={report['coding']}, " if report.get("coding", "rate") != "rate" else ""
    print(f"wrote {output}  (T={report['timesteps']}, {coding}pieces={report['pieces']}, "
          f"calibration={report['calibration']}, {timing['total']:.1f} s including {timing['validate']:.1f} s "
          f"validation)")
    print(f"SNN vs ANN on {v['points']} fresh domain points: relative L2 {v['rel_l2_snn_vs_ann']:.3e}, "
          f"max abs {v['max_abs_snn_vs_ann']:.3e}")
    for key in ("rel_l2_snn_vs_exact", "rel_l2_ann_vs_exact"):
        if key in v:
            print(f"  {key.replace('_', ' ').replace('rel l2 ', 'relative L2 ')}: {v[key]:.3e}")
    print(f"{'layer':<32} {'activation':<12} {'units':>6} {'neurons':>8} {'pieces':>7} {'spike rate':>10}")
    for layer in report["layers"]:
        print(f"{layer['name'][:32]:<32} {layer['activation'][:12]:<12} {layer['neurons']:>6} "
              f"{layer['spiking_neurons']:>8} {layer['pieces_mean']:>7.2f} {layer['spike_rate']:>10.3f}")
    print(f"per sample: {report['spikes_per_sample']:.1f} spikes, {report['synops_per_sample']:.1f} synaptic ops, "
          f"{report['neuron_updates_per_sample']:.0f} neuron updates, {report['first_layer_macs_per_sample']:.0f} "
          f"first-layer MACs, {report['analog_macs_per_sample']:.0f} analog MACs; "
          f"ANN {report['ann_macs_per_sample']:.0f} MACs; {report['spikes_per_synapse']:.2f} spikes per synapse")
    print(spiking_share(report))
    if any(not a["spikes"] for a in report["activations"]):
        for line in activation_lines(report["activations"]):
            print(line)
    if "gates_choice" in report:
        print(gates_line(report["gates_choice"]))
    for line in energy_lines(report):
        print(line)
    if report.get("coding") == "delta":
        from ..delta.stream import summary_lines
        for line in summary_lines(report):
            print(line)
    if report["analog_nodes"]:
        print(f"{len(report['analog_nodes'])} node(s) stay analog (see 'onnx2snn inspect')")
    if "search" in report:
        print(f"searched for the cheapest SNN within {report['target_error']:g} of the ANN "
              f"({report['energy_model']}; errors on selection points, * = Pareto front):")
        for row in report["search"]:
            print(f"  {'*' if row['pareto'] else ' '} {row['method']:<8} T={row['timesteps']:<4} first layer "
                  f"{row['first_layer']:<7} rest {row['rest']:<7} error {row['rel_l2_snn_vs_ann']:.2e}  "
                  f"energy {row['energy_ratio']:.3f}x  ({row['seconds']:.0f} s"
                  + (f", {row['finetune_iterations']} fit iterations)" if "finetune_iterations" in row else ")"))


def spiking_share(report: dict) -> str:
    """How much of the network spikes: the ANN's MACs that became synaptic operations (the rest, first
    layers and analog nodes, still run as MACs) and the hidden layers that spike (``structure.hidden_layers``)."""
    from ..structure import hidden_layers
    spiking, hidden = hidden_layers(report)
    return (f"{100 * report['spiking_mac_fraction']:.0f}% of the ANN's MACs became synaptic operations; "
            f"{spiking} of {hidden} hidden layers spike")


def activation_lines(activations: list[dict]) -> list[str]:
    """Per activation of the model: whether it spikes, and why not (``Structure.activations``)."""
    spiking = sum(a["spikes"] for a in activations)
    lines = [f"activations: {spiking} of {len(activations)} spike"]
    for a in activations:
        lines.append(f"  {a['name']} ({a['op']}): " + ("spikes" if a["spikes"] else f"analog, {a['reason']}"))
    return lines


def gates_line(choice: dict) -> str:
    """``--gates auto``'s choice (``gates.py``): each variant's error and energy on the selection points."""
    measured = ", ".join(f"{variant} {c['rel_l2_selection']:.2e} at {c['energy_ratio']:.2f}x ANN"
                         for variant, c in choice["candidates"].items())
    return (f"gates (static: computed once per point; spiking: spiking layers): {measured} ({choice['energy_model']}, "
            f"{choice['selection_points']} selection points, goal {choice['goal']:.1e}): kept {choice['chosen']}")


def energy_lines(report: dict) -> list[str]:
    """The energy table of a report: each cost model's SNN and ANN energy per sample and their ratio, and
    what the SNN spends it on."""
    lines = ["energy per sample, compute only (same cost table for both sides):"]
    for name, e in report["energy"].items():
        spent = report["energy_breakdown_pj"][name]
        total = e["snn_pj"] or 1.0
        parts = ", ".join(f"{k.replace('_', ' ')} {100 * v / total:.0f}%" for k, v in spent.items() if v > 0)
        lines.append(f"  {name:<10} SNN {e['snn_pj'] / 1e3:10.2f} nJ  ANN {e['ann_pj'] / 1e3:8.2f} nJ  "
                     f"{e['ratio']:7.3f}x   ({parts})")
    return lines
