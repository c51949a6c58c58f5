/* The minimal viewer: server-rendered JPEG frames, scrolled with the wheel, keys, slider or a
   swipe; window/level by preset or by dragging; zoom; cine series play their MP4. No build
   step and no library, so it loads fast on a 300 kbit/s link and works on a phone. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("viewer-data").textContent);
  const stage = $("viewer-stage");
  const image = $("viewer-image");
  const video = $("viewer-video");
  const slider = $("viewer-slider");
  const sliceLabel = $("viewer-slice");
  const presetSelect = $("viewer-preset");
  const wlLabel = $("viewer-wl");
  const loading = $("viewer-loading");
  const cineButton = $("viewer-cine");
  const labels = { frames: cineButton.textContent, play: "▶" };

  const state = { series: null, slices: [], index: 0, window: null, zoom: 1, panX: 0, panY: 0, cine: false };
  const prefetched = new Set();
  let requestTimer = null;

  function frameSize() {
    const box = stage.getBoundingClientRect();
    const wanted = Math.max(box.width, box.height) * (window.devicePixelRatio || 1) * Math.min(state.zoom, 2);
    return data.sizes.find((size) => size >= wanted) || data.sizes[data.sizes.length - 1];
  }

  function frameUrl(index) {
    const slice = state.slices[index];
    let url = data.frameUrl + "/" + slice.id + "/frames/" + slice.frame + ".jpg?size=" + frameSize();
    if (state.window) url += "&window=" + Math.round(state.window[0]) + "," + Math.round(state.window[1]);
    return url;
  }

  function prefetch() {
    for (const step of [1, -1, 2, -2, 3, -3, 4, 5]) {
      const index = state.index + step;
      if (index < 0 || index >= state.slices.length) continue;
      const url = frameUrl(index);
      if (prefetched.has(url)) continue;
      prefetched.add(url);
      new Image().src = url;
    }
  }

  function showWindow() {
    wlLabel.textContent = state.window
      ? "W " + Math.round(state.window[1]) + " / L " + Math.round(state.window[0])
      : "";
  }

  function show() {
    if (!state.slices.length) return;
    state.index = Math.max(0, Math.min(state.slices.length - 1, state.index));
    const url = frameUrl(state.index);
    if (image.getAttribute("src") !== url) {
      loading.hidden = false;
      image.src = url;
      prefetched.add(url);
    }
    slider.value = String(state.index + 1);
    sliceLabel.textContent = (state.index + 1) + " / " + state.slices.length;
    stage.dataset.slice = String(state.index + 1);
    showWindow();
    prefetch();
  }

  image.addEventListener("load", () => { loading.hidden = true; stage.dataset.loaded = image.getAttribute("src"); });
  image.addEventListener("error", () => { loading.hidden = true; });

  function applyTransform() {
    const transform = "translate(" + state.panX + "px," + state.panY + "px) scale(" + state.zoom + ")";
    image.style.transform = transform;
    video.style.transform = transform;
  }

  function setCine(on) {
    state.cine = on && Boolean(state.series && state.series.video);
    video.hidden = !state.cine;
    image.hidden = state.cine;
    slider.disabled = state.cine;
    cineButton.hidden = !(state.series && state.series.video);
    cineButton.textContent = state.cine ? labels.frames : labels.play;
    if (state.cine) {
      if (video.getAttribute("src") !== state.series.video) video.src = state.series.video;
      video.play().catch(() => {});
    } else {
      video.pause();
      show();
    }
  }

  function openSeries(seriesId) {
    const series = data.series.find((item) => item.id === seriesId) || data.series[0];
    if (!series) return;
    state.series = series;
    state.slices = [];
    for (const instance of series.instances) {
      for (let frame = 1; frame <= instance.frames; frame++) state.slices.push({ id: instance.id, frame: frame });
    }
    state.index = Math.floor(state.slices.length / 2);
    state.window = null;
    presetSelect.value = "default";
    slider.max = String(Math.max(state.slices.length, 1));
    document.querySelectorAll(".series-button").forEach((button) => {
      button.setAttribute("aria-pressed", String(Number(button.dataset.series) === series.id));
    });
    setCine(Boolean(series.video));
    if (!state.cine) show();
  }

  function step(delta) {
    if (state.cine) setCine(false);
    state.index += delta;
    show();
  }

  function setZoom(factor) {
    state.zoom = Math.max(1, Math.min(8, state.zoom * factor));
    if (state.zoom === 1) { state.panX = 0; state.panY = 0; }
    applyTransform();
  }

  function requestSoon() {
    clearTimeout(requestTimer);
    requestTimer = setTimeout(show, 150);
  }

  // The window a drag starts from when the image still shows its own default.
  function currentWindow() {
    if (state.window) return state.window.slice();
    if (state.series && state.series.window) return state.series.window.slice();
    return state.series && state.series.modality === "CT" ? [40, 400] : [128, 256];
  }

  presetSelect.addEventListener("change", () => {
    const preset = data.presets.find((item) => item.key === presetSelect.value);
    if (!preset) return;
    state.window = preset.window ? preset.window.slice() : null;
    show();
  });
  slider.addEventListener("input", () => { state.index = Number(slider.value) - 1; show(); });
  $("viewer-zoom-in").addEventListener("click", () => setZoom(1.25));
  $("viewer-zoom-out").addEventListener("click", () => setZoom(0.8));
  $("viewer-reset").addEventListener("click", () => {
    state.zoom = 1; state.panX = 0; state.panY = 0; state.window = null;
    presetSelect.value = "default";
    applyTransform();
    show();
  });
  cineButton.addEventListener("click", () => setCine(!state.cine));
  document.querySelectorAll(".series-button").forEach((button) => {
    button.addEventListener("click", () => openSeries(Number(button.dataset.series)));
  });

  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.ctrlKey) { setZoom(event.deltaY < 0 ? 1.1 : 0.9); return; }
    step(event.deltaY > 0 ? 1 : -1);
  }, { passive: false });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
    if (event.key in moves) { event.preventDefault(); step(moves[event.key]); }
    else if (event.key === "Home") { event.preventDefault(); state.index = 0; step(0); }
    else if (event.key === "End") { event.preventDefault(); state.index = state.slices.length - 1; step(0); }
    else if (event.key === "+" || event.key === "=") setZoom(1.25);
    else if (event.key === "-") setZoom(0.8);
  });

  // Pointers: a mouse drag changes the window (shift/ctrl-drag pans); one finger swipes
  // through slices; two fingers pinch to zoom.
  const pointers = new Map();
  let drag = null;
  stage.addEventListener("pointerdown", (event) => {
    stage.focus({ preventScroll: true });
    try { stage.setPointerCapture(event.pointerId); } catch (error) { /* not an active pointer */ }
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    drag = {
      x: event.clientX, y: event.clientY, index: state.index, window: currentWindow(),
      panX: state.panX, panY: state.panY, zoom: state.zoom, spread: spread(),
      mode: event.pointerType === "mouse" ? (event.shiftKey || event.ctrlKey || event.button === 1 ? "pan" : "window") : "slices",
    };
  });
  function spread() {
    const points = Array.from(pointers.values());
    return points.length < 2 ? 0 : Math.hypot(points[0].x - points[1].x, points[0].y - points[1].y);
  }
  stage.addEventListener("pointermove", (event) => {
    if (!drag || !pointers.has(event.pointerId)) return;
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (pointers.size >= 2) {
      if (!drag.spread) drag.spread = spread();
      if (drag.spread) { state.zoom = Math.max(1, Math.min(8, drag.zoom * spread() / drag.spread)); applyTransform(); }
      return;
    }
    if (drag.mode === "pan") {
      state.panX = drag.panX + dx; state.panY = drag.panY + dy; applyTransform();
    } else if (drag.mode === "window") {
      const [center, width] = drag.window;
      const speed = Math.max(1, width / 200);
      state.window = [center + dy * speed, Math.max(1, width + dx * speed)];
      presetSelect.value = "custom";
      showWindow();
      requestSoon();
    } else if (state.slices.length > 1) {
      // A swipe the height of the stage goes through about 30 slices.
      const perSlice = Math.max(8, stage.clientHeight / 30);
      const target = drag.index - Math.round(dy / perSlice);
      if (target !== state.index) { if (state.cine) setCine(false); state.index = target; show(); }
    }
  });
  function release(event) {
    pointers.delete(event.pointerId);
    if (!pointers.size) drag = null;
  }
  stage.addEventListener("pointerup", release);
  stage.addEventListener("pointercancel", release);

  const wanted = Number(new URLSearchParams(window.location.search).get("series"));
  openSeries(wanted || (data.series[0] && data.series[0].id));
  stage.focus({ preventScroll: true });
})();
