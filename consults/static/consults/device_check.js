// The device check: camera preview, a microphone level meter, and the link's speed measured
// against our own server, then a verdict in plain words. The thresholds come from the server
// (consults/services/link_quality.py) so this page and the server judge a link alike.
const config = JSON.parse(document.getElementById("device-check-config").textContent);
const strings = config.strings;

const startButton = document.getElementById("dc-start");
const media = document.getElementById("dc-media");
const video = document.getElementById("dc-video");
const meter = document.getElementById("dc-meter");
const mediaStatus = document.getElementById("dc-media-status");
const netStatus = document.getElementById("dc-net-status");
const numbers = document.getElementById("dc-numbers");
const verdict = document.getElementById("dc-verdict");

// A probe shorter than this is dominated by latency, not by the link's rate.
const TARGET_MS = 1000;
const PINGS = 4;
// What a previous run opened: closed before a new run, or the camera light stays on.
const previous = { stream: null, audio: null };

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// --- camera and microphone -------------------------------------------------------------------

function mediaErrorText(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return strings.denied;
    case "NotFoundError":
    case "OverconstrainedError":
      return strings.noDevice;
    case "NotReadableError":
    case "AbortError":
      return strings.busy;
    default:
      return strings.failed;
  }
}

async function openDevices() {
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
      audio: true,
    });
  } catch (error) {
    // A phone without a usable camera can still take part by voice: say so, not "failed".
    if (error.name !== "NotFoundError") throw error;
    const audioOnly = await navigator.mediaDevices.getUserMedia({ audio: true });
    audioOnly.cameraMissing = true;
    return audioOnly;
  }
}

function watchMicrophone(stream) {
  const AudioContext = window.AudioContext || window.webkitAudioContext;
  const audio = new AudioContext();
  previous.audio = audio;
  audio.resume(); // started from the button's tap, so browsers allow it
  const analyser = audio.createAnalyser();
  analyser.fftSize = 1024;
  audio.createMediaStreamSource(stream).connect(analyser);
  const samples = new Uint8Array(analyser.fftSize);
  let peak = 0;
  const tick = () => {
    analyser.getByteTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += ((sample - 128) / 128) ** 2;
    // RMS of a normal voice is ~0.05-0.2; scale it so speaking fills most of the bar.
    const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    meter.value = level;
    peak = Math.max(peak, level);
    meter.dataset.peak = peak.toFixed(3);
    if (audio.state !== "closed") requestAnimationFrame(tick);
  };
  tick();
}

async function checkDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(mediaStatus, strings.unsupported, true); // e.g. a page not on https
    return;
  }
  say(mediaStatus, strings.starting);
  if (previous.stream) previous.stream.getTracks().forEach((track) => track.stop());
  if (previous.audio) previous.audio.close();
  let stream;
  try {
    stream = await openDevices();
  } catch (error) {
    say(mediaStatus, mediaErrorText(error), true);
    mediaStatus.dataset.error = error.name || "Error";
    return;
  }
  previous.stream = stream;
  media.hidden = false;
  const lines = [];
  if (stream.cameraMissing) {
    video.hidden = true;
    lines.push(strings.noCamera);
  } else {
    video.hidden = false;
    video.srcObject = stream;
    lines.push(strings.cameraOk);
  }
  if (stream.getAudioTracks().length) {
    watchMicrophone(stream);
    lines.push(strings.micOk);
  }
  say(mediaStatus, lines.join(" "));
}

// --- the link ------------------------------------------------------------------------------

function randomBody(size) {
  // Random bytes, so no compressing proxy on the way makes the link look faster than it is.
  const body = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(body.subarray(offset, Math.min(size, offset + 65536)));
  }
  return body;
}

async function timed(request) {
  const started = performance.now();
  const response = await request();
  if (!response.ok) throw new Error(`probe answered ${response.status}`);
  await response.arrayBuffer();
  return performance.now() - started;
}

function download(size) {
  const url = `${config.probeUrl}?bytes=${size}&t=${Date.now()}`;
  return timed(() => fetch(url, { cache: "no-store" }));
}

function upload(size) {
  const body = randomBody(size);
  return timed(() =>
    fetch(config.probeUrl, {
      method: "POST",
      body,
      cache: "no-store",
      headers: { "X-CSRFToken": config.csrfToken, "Content-Type": "application/octet-stream" },
    }),
  );
}

async function roundTrip() {
  const times = [];
  for (let i = 0; i < PINGS; i++) times.push(await download(0));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]; // the median: one slow ping says little
}

// Grow the probe until one lasts about TARGET_MS (or hits the cap): a 300 kbit/s phone
// finishes in seconds, a fast link still sends enough bytes to be measured.
async function rate(probe, rttMs) {
  let size = Math.min(config.probeStartBytes, config.probeMaxBytes);
  for (;;) {
    const elapsed = await probe(size);
    const transferMs = Math.max(elapsed - rttMs, elapsed / 2, 1);
    if (elapsed >= TARGET_MS || size >= config.probeMaxBytes) {
      return (size * 8) / transferMs; // bits per millisecond = kbit/s
    }
    size = Math.min(config.probeMaxBytes, size * 4);
  }
}

function expectedQuality(downKbps, upKbps, rttMs) {
  // The same rule as expected_quality() in consults/services/link_quality.py.
  const slower = Math.min(downKbps, upKbps);
  const level = config.levels.find(
    (candidate) => slower >= candidate.min_kbps && rttMs <= candidate.max_rtt_ms,
  );
  return level ? level.name : "audio";
}

function showNumbers(downKbps, upKbps, rttMs) {
  const rows = [
    [strings.down, `${Math.round(downKbps)} ${strings.kbps}`],
    [strings.up, `${Math.round(upKbps)} ${strings.kbps}`],
    [strings.rtt, `${Math.round(rttMs)} ${strings.ms}`],
  ];
  numbers.replaceChildren(
    ...rows.flatMap(([label, value]) => {
      const term = document.createElement("dt");
      const detail = document.createElement("dd");
      term.textContent = label;
      detail.textContent = value;
      return [term, detail];
    }),
  );
  numbers.hidden = false;
}

async function checkLink() {
  netStatus.hidden = false;
  say(netStatus, strings.measuring);
  try {
    const rttMs = await roundTrip();
    const downKbps = await rate(download, rttMs);
    const upKbps = await rate(upload, rttMs);
    const quality = expectedQuality(downKbps, upKbps, rttMs);
    showNumbers(downKbps, upKbps, rttMs);
    netStatus.hidden = true;
    verdict.textContent = config.verdicts[quality];
    verdict.dataset.quality = quality;
    verdict.hidden = false;
  } catch {
    say(netStatus, strings.netFailed, true);
  }
}

startButton.addEventListener("click", async () => {
  startButton.disabled = true;
  // Both at once: the patient reads the camera result while the link is measured.
  await Promise.all([checkDevices(), checkLink()]);
  startButton.disabled = false;
});
