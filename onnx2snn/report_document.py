"""The report a person reads: ``report.md`` with four matplotlib figures, and ``report.json`` with every
number the figures show.

Figures (PNG, written beside ``report.md``):

* ``field.png``: the SNN and the ANN (and the exact solution, where known) over the domain
  (``field.py``): a 1-D domain as curves with the error |y_SNN − y_ANN| below; a 2-D domain (or slice) as
  heat maps of y_ANN and of y_SNN − y_ANN;
* ``timesteps.png``: relative L2 error against the ANN, and energy / ANN energy per cost table, against T
  (the artifact run at each T: ``evaluate.py``), the ANN's energy as the line at 1.0;
* ``spikes.png``: spikes per sample per layer, and the histogram of spikes per neuron per sample;
* ``energy.png``: what the SNN's energy is spent on (synaptic operations, neuron updates, first layer,
  analog nodes, readout) beside the ANN's, per cost table.  Compute only: memory traffic is excluded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ModelError
from .field import Field
from .saving import atomic_write

FIGURES = ("field.png", "timesteps.png", "spikes.png", "energy.png")
PARTS = ("synops", "neuron_updates", "first_layer", "analog", "readout")


def write_report(directory: str | Path, report: dict, field: Field, title: str) -> list[Path]:
    """Write ``report.md``, ``report.json`` and ``FIGURES`` into ``directory`` (created; files of these
    names are replaced, nothing else is touched); ``report``: an ``evaluate`` report; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ModelError(f"{directory}: exists and is not a directory; give --report a directory")
    directory.mkdir(parents=True, exist_ok=True)
    data = {**report, "figures": {"field": field.to_dict()}}
    painters = (_field, _timesteps, _spikes, _energy)
    written = []
    for name, paint in zip(FIGURES, painters):
        figure = paint(plt, data, field)
        target = directory / name
        atomic_write(target, lambda tmp: figure.savefig(tmp, dpi=90, format="png"))
        plt.close(figure)
        written.append(target)
    text = json.dumps(data, separators=(",", ":")) + "\n"
    atomic_write(directory / "report.json", lambda tmp: tmp.write_text(text))
    markdown = markdown_report(data, title)
    atomic_write(directory / "report.md", lambda tmp: tmp.write_text(markdown))
    return [directory / "report.md", directory / "report.json"] + written


def markdown_report(report: dict, title: str) -> str:
    """The summary table, the figures, the T sweep, the layers and the analog nodes as Markdown."""
    v = report["validation"]
    lines = [f"# {title}", "",
             f"Spiking artifact `{report['model']}` against its ANN `{report['ann']}` on {v['points']} fresh "
             f"domain points, T = {report['timesteps']} (calibrated for T = {report['calibrated_timesteps']}). "
             "Energy is compute only (memory traffic excluded), priced with the same table for both sides.", "",
             "| quantity | value |", "|---|---|",
             f"| relative L2, SNN vs ANN | {v['rel_l2_snn_vs_ann']:.3e} |",
             f"| max abs, SNN vs ANN | {v['max_abs_snn_vs_ann']:.3e} |"]
    for key, label in (("rel_l2_snn_vs_exact", "relative L2, SNN vs exact"),
                       ("rel_l2_ann_vs_exact", "relative L2, ANN vs exact")):
        if key in v:
            lines.append(f"| {label} | {v[key]:.3e} |")
    lines += [f"| spikes per sample | {report['spikes_per_sample']:,.0f} |",
              f"| synaptic operations per sample | {report['synops_per_sample']:,.0f} |",
              f"| neuron updates per sample | {report['neuron_updates_per_sample']:,.0f} |",
              f"| ANN MACs per sample | {report['ann_macs_per_sample']:,.0f} |",
              f"| ANN MACs that became synaptic operations | {100 * report['spiking_mac_fraction']:.1f}% |",
              f"| spikes per synapse per inference | {report['spikes_per_synapse']:.3g} |"]
    for name, e in report["energy"].items():
        lines.append(f"| energy, {name} | SNN {e['snn_pj'] / 1e3:,.2f} nJ, ANN {e['ann_pj'] / 1e3:,.2f} nJ: "
                     f"**{e['ratio']:.3g}x** |")
    lines += ["", "## Where on the domain", "", "![SNN and ANN over the domain](field.png)", ""]
    held = report["figures"]["field"]["slice"]
    if held:
        lines += ["Slice with " + ", ".join(f"{k} = {x:g}" for k, x in held.items()) + " held fixed.", ""]
    lines += ["## Error and energy against T", "", "![error and energy against T](timesteps.png)", "",
              "| T | SNN vs ANN | SNN vs exact | spikes/sample | " + " | ".join(f"x ANN {m}" for m in report["energy"])
              + " |", "|---|---|---|---|" + "---|" * len(report["energy"])]
    for row in report["sweep"]:
        exact = f"{row['rel_l2_snn_vs_exact']:.3e}" if "rel_l2_snn_vs_exact" in row else "-"
        lines.append(f"| {row['timesteps']} | {row['rel_l2_snn_vs_ann']:.3e} | {exact} | "
                     f"{row['spikes_per_sample']:,.0f} | " + " | ".join(f"{r:.3g}" for r in row["energy_ratio"].values())
                     + " |")
    lines += ["", "## Spikes", "", "![spikes per layer and per neuron](spikes.png)", "",
              "| layer | activation | units | neurons | spike rate | spikes/sample | fan-out | synaptic ops/sample |",
              "|---|---|---|---|---|---|---|---|"]
    for layer in report["layers"]:
        lines.append(f"| `{layer['name']}` | {layer['activation']} | {layer['neurons']} | {layer['spiking_neurons']} | "
                     f"{layer['spike_rate']:.3f} | {layer['spikes_per_sample']:,.1f} | {layer['fan_out']} | "
                     f"{layer['synops_per_sample']:,.0f} |")
    lines += ["", "## Energy", "", "![energy breakdown](energy.png)", ""]
    if report["analog_nodes"]:
        lines += [f"{len(report['analog_nodes'])} node(s) stay analog, counted at the ANN's cost:", ""]
        lines += [f"* `{a['name']}` ({a['op']}): {a['reason']}" for a in report["analog_nodes"]]
    else:
        lines.append("No node stays analog.")
    return "\n".join(lines) + "\n"


def _field(plt, report: dict, field: Field):
    if len(field.axes) == 1:
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=(2, 1))
        (name, x), = field.axes
        top.plot(x, field.ann, label="ANN", lw=2)
        top.plot(x, field.snn, label="SNN", lw=1)
        if field.exact is not None:
            top.plot(x, field.exact, "k:", label="exact", lw=1)
        top.set_ylabel(field.output)
        top.legend()
        bottom.semilogy(x, np.maximum(np.abs(field.snn - field.ann), 1e-12), color="C3")
        bottom.set_ylabel("|SNN - ANN|")
        bottom.set_xlabel(name)
    else:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        (xn, x), (yn, y) = field.axes
        extent = (y[0], y[-1], x[-1], x[0])
        image = left.imshow(field.ann, extent=extent, aspect="auto", cmap="viridis")
        figure.colorbar(image, ax=left)
        left.set_title(f"ANN {field.output}")
        error = field.snn - field.ann
        bound = float(np.max(np.abs(error))) or 1.0
        image = right.imshow(error, extent=extent, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
        figure.colorbar(image, ax=right)
        right.set_title("SNN - ANN")
        for axis in (left, right):
            axis.set_xlabel(yn)
            axis.set_ylabel(xn)
    figure.suptitle(f"T = {report['timesteps']}: relative L2 {report['validation']['rel_l2_snn_vs_ann']:.2e} vs ANN")
    figure.tight_layout()
    return figure


def _timesteps(plt, report: dict, field: Field):
    rows = sorted(report["sweep"], key=lambda r: r["timesteps"])
    T = [r["timesteps"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(T, [r["rel_l2_snn_vs_ann"] for r in rows], "o-", label="SNN vs ANN")
    if all("rel_l2_snn_vs_exact" in r for r in rows):
        left.loglog(T, [r["rel_l2_snn_vs_exact"] for r in rows], "s--", label="SNN vs exact")
        left.axhline(rows[0]["rel_l2_ann_vs_exact"], color="k", ls=":", label="ANN vs exact")
    left.set_xlabel("T (time steps)")
    left.set_ylabel("relative L2 error")
    left.legend()
    for name in rows[0]["energy_ratio"]:
        right.loglog(T, [r["energy_ratio"][name] for r in rows], "o-", label=name)
    right.axhline(1.0, color="k", lw=1, label="ANN")
    right.set_xlabel("T (time steps)")
    right.set_ylabel("energy / ANN energy (compute only)")
    right.legend()
    figure.tight_layout()
    return figure


def _spikes(plt, report: dict, field: Field):
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    layers = report["layers"]
    labels = [f"{k + 1}" for k in range(len(layers))]
    left.bar(labels, [l["spikes_per_sample"] for l in layers], color="C0")
    left.set_xlabel("spiking layer")
    left.set_ylabel("spikes per sample")
    per_neuron = report.get("neuron_spikes", {})
    if per_neuron:
        values = [np.asarray(v) for v in per_neuron.values()]
        top = max(float(max(v.max() for v in values if v.size)), 1e-9)
        right.hist(values, bins=np.linspace(0, top, 31), stacked=True, label=[f"layer {k + 1}" for k in range(len(values))])
        right.legend()
    right.set_xlabel(f"spikes per neuron per sample (T = {report['timesteps']})")
    right.set_ylabel("neurons")
    figure.tight_layout()
    return figure


def _energy(plt, report: dict, field: Field):
    models = list(report["energy"])
    figure, axis = plt.subplots(figsize=(8, 4))
    x = np.arange(len(models))
    bottom = np.zeros(len(models))
    for part in PARTS:
        values = np.array([report["energy_breakdown_pj"][m].get(part, 0.0) / report["energy"][m]["ann_pj"]
                           for m in models])
        axis.bar(x - 0.2, values, 0.4, bottom=bottom, label=f"SNN: {part.replace('_', ' ')}")
        bottom += values
    axis.bar(x + 0.2, np.ones(len(models)), 0.4, color="0.6", label="ANN")
    axis.set_xticks(x, models)
    axis.set_ylabel("energy per sample / ANN's (compute only)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
