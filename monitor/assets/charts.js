// tbmon's interactive charts: draws every chart spec of the page with uPlot (inlined above).
// Specs come from monitor/html_charts.py as JSON in <script id="tbmon-charts">. Every name from
// the logs is set with textContent or as a title attribute, never parsed as HTML.
(() => {
  const specs = JSON.parse(document.getElementById('tbmon-charts').textContent);
  const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
  const SEVERITY = {critical: '#d62728', warning: '#ff7f0e', info: '#7f7f7f'};
  const LANE_ROWS = 3, ROW_HEIGHT = 16;
  window.tbmonCharts = [];

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };
  const decade = v => v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9;
  // A log axis spanning decades keeps only their lines: nine per decade read as grey bands.
  const decades = (u, splits) => splits.filter(decade).length >= 2 ? splits.map(v => decade(v) ? v : null) : splits;
  const number = v => v == null ? '—'
    : (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) ? v.toExponential(3) : String(+v.toPrecision(4));
  const tick = v => v == null ? ''  // axis labels: short enough for the axis at any magnitude
    : (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) ? v.toExponential(1).replace('.0e', 'e') : String(+v.toPrecision(3));

  function nearest(u, si, i) {
    // Curves logged at different steps share one x: hover shows each curve's closest point.
    const ys = u.data[si];
    for (let d = 0; d < ys.length; d++) {
      if (i - d >= 0 && ys[i - d] != null) return i - d;
      if (i + d < ys.length && ys[i + d] != null) return i + d;
    }
    return i;
  }

  function entry(legend, colour, dashed, name, onClick) {
    const item = el('button', 'entry');
    item.type = 'button';
    item.setAttribute('aria-pressed', 'true');
    const swatch = el('span', 'swatch' + (dashed ? ' dashed' : ''));
    swatch.style.borderColor = colour;
    const value = el('span', 'value', '—');
    item.append(swatch, el('span', 'name', name), value);
    item.addEventListener('click', () => {
      const shown = onClick();
      item.classList.toggle('off', !shown);
      item.setAttribute('aria-pressed', String(shown));
    });
    legend.append(item);
    return value;
  }

  function markers(spec) {
    // One marker per (step, kind) of alert, one per step with a NaN/Inf point.
    const out = new Map();
    for (const a of spec.alerts) {
      const key = a.step + ' ' + a.kind, line = `step ${a.step} · ${a.severity} ${a.kind} · ${a.run}: ${a.text}`;
      const m = out.get(key);
      if (m) m.title += '\n' + line;
      else out.set(key, {step: a.step, label: a.kind, cls: a.severity, colour: SEVERITY[a.severity] || '#7f7f7f', title: line});
    }
    for (const p of spec.nonfinite) {
      const key = p.step + ' NaN/Inf', m = out.get(key);
      if (m) m.title += '\n' + p.name;
      else out.set(key, {step: p.step, label: 'NaN/Inf', cls: 'nonfinite', colour: '#d62728', title: `step ${p.step} · NaN/Inf in\n${p.name}`});
    }
    return [...out.values()].sort((a, b) => a.step - b.step);
  }

  function placeMarkers(u, lane, items) {
    // Labels go in rows of the lane above the plot, never over a curve; the row is the first
    // where the label fits, and a label that fits nowhere shows its glyph only (title keeps it).
    const origin = u.over.getBoundingClientRect().left - lane.getBoundingClientRect().left;
    const ends = new Array(LANE_ROWS).fill(-Infinity);
    let rows = 0;
    for (const m of items) {
      const x = u.valToPos(m.step, 'x');
      const inside = m.step >= u.scales.x.min && m.step <= u.scales.x.max;
      m.node.style.display = inside ? '' : 'none';
      if (!inside) continue;
      m.node.textContent = '▼ ' + m.label;
      const left = origin + x - 5;
      let row = ends.findIndex(end => end + 6 <= left);
      if (row < 0) {
        row = ends.indexOf(Math.min(...ends));
        m.node.textContent = '▼';
      }
      m.node.style.left = left + 'px';
      m.node.style.top = row * ROW_HEIGHT + 'px';
      ends[row] = Math.max(ends[row], left + m.node.offsetWidth);
      rows = Math.max(rows, row + 1);
    }
    lane.style.height = Math.max(rows, 1) * ROW_HEIGHT + 'px';
  }

  function draw(box, spec, index) {
    const lane = el('div', 'lane'), plot = el('div', 'plot'), legend = el('div', 'legend');
    const step = el('span', 'step', 'step —');
    legend.append(step);
    box.append(el('div', 'chart-title', spec.title), lane, plot, legend);
    const items = markers(spec);
    for (const m of items) {
      m.node = el('span', 'marker ' + m.cls);
      m.node.style.color = m.colour;
      m.node.title = m.title;
      lane.append(m.node);
    }
    const series = [{label: 'step'}];
    let next = 0;
    for (const s of spec.series) {
      const colour = s.role === 'dead' ? '#000' : s.role === 'other' ? '#b8b8b8' : COLOURS[next++ % COLOURS.length];
      series.push({
        label: s.name, stroke: colour, spanGaps: true,
        width: s.role === 'other' ? 0.8 : 1.5, dash: s.role === 'dead' ? [6, 4] : undefined,
      });
    }
    const opts = {
      width: Math.max(box.clientWidth, 320), height: 280, legend: {show: false},
      cursor: {drag: {x: true, y: false}, sync: {key: spec.group}, dataIdx: nearest},
      scales: {x: {time: false}, y: spec.log ? {distr: 3} : {}},
      axes: [{label: 'step'}, spec.log
        ? {size: 64, values: (u, vals) => vals.map(tick), filter: decades, grid: {filter: decades}, ticks: {filter: decades}}
        : {size: 64, values: (u, vals) => vals.map(tick)}],
      series,
      hooks: {
        drawClear: [u => {  // alert steps as faint dashed lines, drawn before (under) the curves
          const {ctx, bbox} = u;
          ctx.save();
          ctx.setLineDash([4, 4]);
          ctx.globalAlpha = 0.45;
          for (const m of items) {
            if (m.step < u.scales.x.min || m.step > u.scales.x.max) continue;
            const x = Math.round(u.valToPos(m.step, 'x', true));
            ctx.strokeStyle = m.colour;
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
        setScale: [(u, key) => { if (key === 'x') placeMarkers(u, lane, items); }],
        setSize: [u => placeMarkers(u, lane, items)],
        setCursor: [u => showValues(u)],
      },
    };
    const u = new uPlot(opts, [spec.x, ...spec.series.map(s => s.y)], plot);
    // Legend: named and dead curves one entry each; "others" one entry for all of them.
    const values = [];
    spec.series.forEach((s, i) => {
      if (s.role === 'other') return;
      const name = s.role === 'dead' ? `${s.name} — dead (all 0${spec.floor != null ? ', drawn at the floor' : ''})` : s.name;
      const value = entry(legend, series[i + 1].stroke, s.role === 'dead', name, () => {
        u.setSeries(i + 1, {show: !u.series[i + 1].show});
        return u.series[i + 1].show;
      });
      values.push([value, idxs => {
        const y = s.y[idxs[i + 1]];
        return s.role === 'dead' && y != null ? '0' : number(y);
      }]);
    });
    const others = spec.series.map((s, i) => i).filter(i => spec.series[i].role === 'other');
    if (others.length) {
      const value = entry(legend, '#b8b8b8', false, `others (${others.length} ${spec.unit})`, () => {
        const show = !u.series[others[0] + 1].show;
        others.forEach(i => u.setSeries(i + 1, {show}));
        return show;
      });
      values.push([value, idxs => {
        const ys = others.map(i => spec.series[i].y[idxs[i + 1]]).filter(v => v != null);
        return ys.length ? `${number(Math.min(...ys))} – ${number(Math.max(...ys))}` : '—';
      }]);
    }
    function showValues(u) {
      const idx = u.cursor.idx;
      step.textContent = idx == null ? 'step —' : `step ${u.data[0][idx]}`;
      for (const [node, text] of values) node.textContent = idx == null ? '—' : text(u.cursor.idxs);
    }
    placeMarkers(u, lane, items);
    box.dataset.ready = 'true';
    window.tbmonCharts[index] = u;
    return u;
  }

  const drawn = [];
  document.querySelectorAll('.chart[data-chart]').forEach(box => {
    const index = Number(box.dataset.chart);
    drawn.push([box, draw(box, specs[index], index)]);
  });
  window.addEventListener('resize', () => {
    for (const [box, u] of drawn) u.setSize({width: Math.max(box.clientWidth, 320), height: 280});
  });
})();
