// Health diary charts: one small uPlot chart per measure, the target range as a shaded band.
// Data comes from the diary's own JSON endpoint (an audited read); labels from the page.

const BAND = "rgba(11, 110, 99, 0.12)";
const BAND_2 = "rgba(179, 38, 30, 0.08)";
const COLORS = ["#0b6e63", "#b3261e"];

const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);

function readConfig() {
  const node = document.getElementById("diary-config");
  return node ? JSON.parse(node.textContent) : null;
}

// Fills the target range under the series (drawAxes runs before drawSeries).
function bandsPlugin(bands) {
  return {
    hooks: {
      drawAxes: [
        (u) => {
          const { left, top, width, height } = u.bbox;
          const ctx = u.ctx;
          ctx.save();
          for (const band of bands) {
            const high = band.high ?? u.scales.y.max;
            const low = band.low ?? u.scales.y.min;
            const y1 = Math.max(top, u.valToPos(high, "y", true));
            const y0 = Math.min(top + height, u.valToPos(low, "y", true));
            if (y0 > y1) {
              ctx.fillStyle = band.color;
              ctx.fillRect(left, y1, width, y0 - y1);
            }
          }
          ctx.restore();
        },
      ],
    },
  };
}

function bandsOf(threshold, twoValues) {
  if (!threshold) return [];
  const bands = [];
  if (threshold.low != null || threshold.high != null) {
    bands.push({ low: threshold.low, high: threshold.high, color: BAND });
  }
  if (twoValues && (threshold.second_low != null || threshold.second_high != null)) {
    bands.push({ low: threshold.second_low, high: threshold.second_high, color: BAND_2 });
  }
  return bands;
}

function rangeText(threshold, twoValues) {
  if (!threshold) return "";
  const pair = (low, high) =>
    low == null && high == null ? "" : `${low ?? "…"}–${high ?? "…"}`;
  const first = pair(threshold.low, threshold.high);
  const second = twoValues ? pair(threshold.second_low, threshold.second_high) : "";
  return [first, second].filter(Boolean).join(" / ");
}

function chartFor(box, spec, data, strings, width) {
  const twoValues = spec.fields.length === 2;
  const bands = bandsOf(data.threshold, twoValues);
  const limits = bands.flatMap((b) => [b.low, b.high]).filter((v) => v != null);
  const series = [{}];
  spec.fields.forEach((field, index) => {
    series.push({
      label: twoValues ? (index === 0 ? strings.systolic : strings.diastolic) : capitalize(spec.label),
      stroke: COLORS[index],
      width: 2,
      points: { show: true, size: 6 },
    });
  });
  const opts = {
    width,
    height: 170,
    series,
    legend: { show: twoValues, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: {
        time: true,
        // From the data itself; one reading has no span: show a day around it.
        range: () => {
          const first = data.times[0];
          const last = data.times[data.times.length - 1];
          return first === last ? [first - 43200, last + 43200] : [first, last];
        },
      },
      y: {
        range: (u, min, max) => {
          const low = Math.min(min ?? Infinity, ...limits);
          const high = Math.max(max ?? -Infinity, ...limits);
          const pad = Math.max((high - low) * 0.1, 1);
          return [Math.floor(low - pad), Math.ceil(high + pad)];
        },
      },
    },
    axes: [{ size: 52 }, { size: 44 }],
    plugins: [bandsPlugin(bands)],
  };
  // eslint-disable-next-line no-undef
  return new uPlot(opts, [data.times, ...data.values], box);
}

function waitForUPlot() {
  // uPlot is a classic deferred script; modules run after it, but be safe on slow links.
  return new Promise((resolve) => {
    if (window.uPlot) return resolve();
    window.addEventListener("load", () => resolve(), { once: true });
  });
}

const charts = new Map();
let latestRequest = 0;

export async function loadCharts(container = document.getElementById("diary-charts")) {
  const config = readConfig();
  if (!container || !config) return;
  const strings = config.strings;
  // A reload after each sent entry may overtake an earlier one: only the latest is drawn.
  const request = ++latestRequest;
  let data;
  try {
    const response = await fetch(config.dataUrl, { credentials: "same-origin" });
    if (!response.ok) throw new Error(String(response.status));
    data = await response.json();
  } catch (error) {
    if (!container.querySelector(".diary-chart")) {
      container.textContent = strings.loadFailed;
    }
    return;
  }
  await waitForUPlot();
  if (request !== latestRequest) return;
  container.textContent = "";
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  for (const spec of config.measures) {
    const seriesData = data.series[spec.measure];
    if (!seriesData) continue;
    const figure = document.createElement("figure");
    figure.className = "diary-chart";
    figure.dataset.measure = spec.measure;
    const caption = document.createElement("figcaption");
    const range = rangeText(seriesData.threshold, spec.fields.length === 2);
    caption.textContent = `${capitalize(spec.label)} (${spec.unit})` + (range ? ` · ${strings.target}: ${range}` : "");
    figure.append(caption);
    container.append(figure);
    if (seriesData.times.length === 0) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = strings.noReadings;
      figure.append(empty);
      continue;
    }
    const box = document.createElement("div");
    figure.append(box);
    const width = Math.max(240, figure.clientWidth || container.clientWidth);
    charts.set(spec.measure, chartFor(box, spec, seriesData, strings, width));
  }
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const [measure, chart] of charts) {
      const figure = document.querySelector(`.diary-chart[data-measure="${measure}"]`);
      if (figure) chart.setSize({ width: Math.max(240, figure.clientWidth), height: 170 });
    }
  }, 200);
});

const auto = document.getElementById("diary-charts");
if (auto && auto.dataset.autoload) loadCharts(auto);
