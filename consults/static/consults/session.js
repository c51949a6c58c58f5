// The call page: one signaling WebSocket (reconnected with backoff), local camera, the
// participant list, the waiting room, chat, and one RTCPeerConnection to the media broker.
// Messages are described in consults/services/signaling.py.

import "./recording.js";

const config = JSON.parse(document.getElementById("session-config").textContent);
const t = config.strings;
const $ = (id) => document.getElementById(id);
const page = $("session");

const NOT_A_PARTICIPANT = 4403;
const PING_MS = 25000;
const QUALITY_MS = 5000;

let socket = null;
let state = "connecting"; // connecting, waiting, admitted, declined, left, refused
let retries = 0;
let reconnectTimer = null;
let pingTimer = null;
let localStream = null;
let facingMode = "user";
let audioOn = true;
let videoOn = true;
let media = null; // the broker connection, see connectMedia()
let linkMode = "normal"; // normal, low (weak link: small video both ways), audio (no video)
let sharing = null; // the screen's video track while sharing
let mediaRetries = 0;
let mediaTimer = null;
let poorMeasurements = 0;
let proposalDismissed = false;
let lastPeople = [];
const statusOf = new Map(); // participant key -> {link, screen}, told by the others

// --- status -------------------------------------------------------------------------------

function show(newState, text) {
  state = newState;
  page.dataset.state = newState;
  $("call-status").textContent = text;
  $("chat").hidden = newState !== "admitted";
}

// --- the signaling socket, reconnecting -----------------------------------------------------

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect() {
  clearTimeout(reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}${config.socketPath}`);
  socket.addEventListener("open", () => {
    retries = 0;
    send({ type: "join" });
    send({ type: "mute", audio: audioOn, video: videoOn });
    clearInterval(pingTimer);
    pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
  });
  socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    clearInterval(pingTimer);
    stopMedia();
    if (event.code === NOT_A_PARTICIPANT) return show("refused", t.refused);
    if (state === "left" || state === "declined") return;
    // A phone switching networks: try again soon, then less often (1 s, 2 s, 4 s ... 15 s).
    show("connecting", t.reconnecting);
    const delay = Math.min(15000, 1000 * 2 ** retries) * (0.75 + Math.random() / 2);
    retries += 1;
    reconnectTimer = setTimeout(connect, delay);
  });
}

// Back on a network: do not wait for the backoff.
window.addEventListener("online", () => {
  if (socket && socket.readyState === WebSocket.CLOSED && !["left", "refused", "declined"].includes(state)) {
    retries = 0;
    connect();
  }
});

function onMessage(message) {
  switch (message.type) {
    case "joined":
      renderParticipants(message.participants);
      setOwnState(message.state);
      if (message.chat) renderChat(message.chat, true);
      break;
    case "participants":
      renderParticipants(message.participants);
      if (message.state) setOwnState(message.state);
      break;
    case "chat.history":
      renderChat(message.messages, true);
      break;
    case "chat":
      renderChat([message.message], false);
      break;
    case "quality":
      markQuality(message.participant_key, message.stats);
      break;
    case "status": {
      const { type, participant_key: key, ...fields } = message;
      statusOf.set(key, { ...statusOf.get(key), ...fields });
      renderParticipants(lastPeople);
      break;
    }
    case "media":
      if (media) {
        media.onSignal(message.signal).catch((error) => console.error("media signal:", error));
      }
      break;
    case "error":
      console.warn("signaling:", message.message);
      break;
    default:
      break;
  }
  // Other modules of the page (recording.js ...) listen here for the messages they handle.
  page.dispatchEvent(new CustomEvent("signal", { detail: message }));
}

// What other modules of the page may use: send a message, read the page's state.
window.telemedSession = {
  send,
  get state() {
    return state;
  },
  get peerConnection() {
    return media ? media.pc : null;
  },
  config,
};

function setOwnState(newState) {
  if (newState === state) return;
  if (newState === "admitted") {
    show("admitted", t.admitted);
    startMedia();
  } else if (newState === "waiting") {
    show("waiting", t.waiting);
  } else if (newState === "declined") {
    show("declined", t.declined);
    stopMedia();
    socket.close();
  }
}

// --- participants and waiting room ----------------------------------------------------------

function renderParticipants(people) {
  lastPeople = people;
  const list = $("participants");
  list.replaceChildren();
  for (const person of people) {
    if (person.state === "declined" && !config.isClinician) continue;
    const item = document.createElement("li");
    item.dataset.state = person.state;
    item.dataset.key = person.participant_key;
    const name = document.createElement("span");
    name.textContent = person.participant_key === config.participantKey ? `${person.name} (${t.you})` : person.name;
    const detail = document.createElement("span");
    detail.className = "state";
    const notes = [t[`state_${person.state}`] || person.state];
    if (!person.audio) notes.push(t.micOff);
    if (!person.video) notes.push(t.camOff);
    const status = statusOf.get(person.participant_key) || {};
    if (person.state === "admitted" && status.link && status.link !== "normal") notes.push(t[`link_${status.link}`]);
    if (person.state === "admitted" && status.screen) notes.push(t.sharingScreen);
    detail.textContent = notes.join(" · ");
    item.append(name, detail);
    if (config.isClinician && person.state === "waiting") {
      for (const [type, label] of [["admit", t.admit], ["decline", t.decline]]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.addEventListener("click", () => send({ type, participant_key: person.participant_key }));
        item.append(button);
      }
    }
    list.append(item);
  }
}

// --- chat -----------------------------------------------------------------------------------

function renderChat(messages, replace) {
  const lines = $("chat-lines");
  if (replace) lines.replaceChildren();
  for (const message of messages) {
    const line = document.createElement("li");
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.author;
    const time = document.createElement("time");
    time.dateTime = message.sent_at;
    time.className = "muted";
    time.textContent = ` ${new Date(message.sent_at).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: config.timeZone,
  })}`;
    line.append(author, document.createTextNode(message.text), time);
    lines.append(line);
  }
  lines.scrollTop = lines.scrollHeight;
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text) return;
  send({ type: "chat", text });
  input.value = "";
});

// --- local camera and controls ------------------------------------------------------------------

function videoConstraints() {
  // Modest by default: many participants are on 3G; the broker forwards, never upscales.
  return { facingMode, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 } };
}

async function startCamera() {
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: videoConstraints() });
  } catch (error) {
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (audioError) {
      localStream = null;
      $("call-quality").hidden = false;
      $("call-quality").textContent = t.noCamera;
      return;
    }
  }
  $("local-video").srcObject = localStream;
}

$("btn-mute").addEventListener("click", (event) => {
  audioOn = !audioOn;
  for (const track of localStream?.getAudioTracks() || []) track.enabled = audioOn;
  event.currentTarget.setAttribute("aria-pressed", String(!audioOn));
  event.currentTarget.textContent = audioOn ? t.mute : t.unmute;
  send({ type: "mute", audio: audioOn });
});

$("btn-camera").addEventListener("click", (event) => {
  videoOn = !videoOn;
  for (const track of localStream?.getVideoTracks() || []) track.enabled = videoOn;
  event.currentTarget.setAttribute("aria-pressed", String(!videoOn));
  event.currentTarget.textContent = videoOn ? t.cameraOff : t.cameraOn;
  send({ type: "mute", video: videoOn });
});

$("btn-switch").addEventListener("click", async () => {
  if (!localStream) return;
  facingMode = facingMode === "user" ? "environment" : "user";
  // Phones cannot open both cameras at once: stop the old one first.
  for (const track of localStream.getVideoTracks()) {
    track.stop();
    localStream.removeTrack(track);
  }
  try {
    const fresh = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
    const track = fresh.getVideoTracks()[0];
    track.enabled = videoOn;
    localStream.addTrack(track);
    if (!sharing) $("local-video").srcObject = localStream;
    await applySending();
  } catch (error) {
    console.warn("switch camera:", error);
  }
});

// --- weak link, audio only, screen sharing -----------------------------------------------------

const LOW_VIDEO = { maxBitrate: 120000, maxFramerate: 15, width: 320 };

function outgoingVideo() {
  if (sharing) return sharing;
  if (linkMode === "audio") return null;
  return localStream?.getVideoTracks()[0] || null;
}

async function setEncoding(sender, values) {
  const params = sender.getParameters();
  if (!params.encodings || params.encodings.length === 0) return; // not negotiated yet
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) delete params.encodings[0][name];
    else params.encodings[0][name] = value;
  }
  await sender.setParameters(params);
}

/** What we send follows the mode: sound always first; small video on a weak link; none in
 * audio-only mode (the screen is still sent while sharing). */
async function applySending() {
  if (!media) return;
  if (media.audioSender) await setEncoding(media.audioSender, { priority: "high", networkPriority: "high" });
  const sender = media.videoSender;
  if (!sender) return;
  const track = outgoingVideo();
  if (sender.track !== track) await sender.replaceTrack(track);
  if (linkMode === "normal" || !track) {
    await setEncoding(sender, { maxBitrate: undefined, maxFramerate: undefined, scaleResolutionDownBy: 1, priority: "low" });
  } else {
    const width = track.getSettings().width || 640;
    await setEncoding(sender, {
      maxBitrate: LOW_VIDEO.maxBitrate,
      maxFramerate: LOW_VIDEO.maxFramerate,
      scaleResolutionDownBy: Math.max(1, width / LOW_VIDEO.width),
      priority: "low",
    });
  }
}

function showLinkMode() {
  const weak = $("btn-weak");
  weak.setAttribute("aria-pressed", String(linkMode === "low"));
  weak.textContent = linkMode === "low" ? t.weakLinkOn : t.weakLinkOff;
  const audio = $("btn-audio-only");
  audio.setAttribute("aria-pressed", String(linkMode === "audio"));
  audio.textContent = linkMode === "audio" ? t.audioOnlyOn : t.audioOnlyOff;
  page.dataset.link = linkMode;
}

async function setLinkMode(mode) {
  linkMode = mode;
  $("call-proposal").hidden = true;
  showLinkMode();
  // The broker sends us a low copy of the others (or no video at all); the others are told.
  send({ type: "link", mode });
  await applySending().catch((error) => console.warn("link mode:", error));
}

$("btn-weak").addEventListener("click", () => setLinkMode(linkMode === "low" ? "normal" : "low"));
$("btn-audio-only").addEventListener("click", () => setLinkMode(linkMode === "audio" ? "normal" : "audio"));
$("btn-proposal-yes").textContent = t.switchWeakLink;
$("btn-proposal-no").textContent = t.notNow;
$("call-proposal-text").textContent = t.proposeWeakLink;
$("btn-proposal-yes").addEventListener("click", () => setLinkMode("low"));
$("btn-proposal-no").addEventListener("click", () => {
  proposalDismissed = true;
  $("call-proposal").hidden = true;
});

// Screen sharing: desktop browsers only (phones have no getDisplayMedia).
if (navigator.mediaDevices?.getDisplayMedia && !/Android|iPhone|iPad|Mobi/i.test(navigator.userAgent)) {
  $("btn-screen").hidden = false;
}

async function stopSharing() {
  if (!sharing) return;
  const track = sharing;
  sharing = null;
  track.stop();
  $("local-video").srcObject = localStream;
  $("local-video").classList.remove("screen");
  $("btn-screen").setAttribute("aria-pressed", "false");
  $("btn-screen").textContent = t.shareScreen;
  send({ type: "screen", on: false });
  await applySending().catch(() => {});
}

$("btn-screen").addEventListener("click", async () => {
  if (sharing) return stopSharing();
  if (!media?.videoSender) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 10, max: 15 } }, audio: false });
  } catch (error) {
    return; // the user chose nothing
  }
  sharing = stream.getVideoTracks()[0];
  sharing.contentHint = "detail"; // sharp text rather than smooth motion
  sharing.addEventListener("ended", stopSharing); // the browser's own "Stop sharing"
  $("local-video").srcObject = stream;
  $("local-video").classList.add("screen");
  $("btn-screen").setAttribute("aria-pressed", "true");
  $("btn-screen").textContent = t.stopSharing;
  send({ type: "screen", on: true });
  await applySending().catch((error) => console.warn("share screen:", error));
});

$("btn-leave").addEventListener("click", () => {
  send({ type: "leave" });
  show("left", t.left);
  clearTimeout(mediaTimer);
  stopSharing();
  stopMedia();
  for (const track of localStream?.getTracks() || []) track.stop();
  if (socket) socket.close();
});

// --- the connection to the media broker ---------------------------------------------------------

/**
 * One RTCPeerConnection to the server's media broker, negotiated through the signaling socket:
 * our offer and ICE candidates go out as {type: "offer"|"ice"}, the broker's answer and
 * candidates come back as {type: "media", signal: {...}}. Returns {pc, audioSender, videoSender,
 * onSignal, close}.
 */
export function connectMedia({ iceServers, stream, sendSignal, onRemoteTrack, onFailed, onConnected }) {
  const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
  let audioSender = null;
  let videoSender = null;
  if (stream) {
    for (const track of stream.getTracks()) {
      const sender = pc.addTrack(track, stream);
      if (track.kind === "audio") audioSender = sender;
      else videoSender = sender;
    }
  }
  // Receive the others even if we send nothing (no camera, audio-only).
  if (!stream || stream.getAudioTracks().length === 0) pc.addTransceiver("audio", { direction: "recvonly" });
  if (!stream || stream.getVideoTracks().length === 0) pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("icecandidate", (event) => {
    sendSignal({ type: "ice", candidate: event.candidate ? event.candidate.toJSON() : null });
  });
  pc.addEventListener("track", (event) => onRemoteTrack(event.track, event.streams[0]));
  // "disconnected" often heals by itself (a moment without packets); "failed" does not.
  let disconnectedTimer = null;
  pc.addEventListener("connectionstatechange", () => {
    clearTimeout(disconnectedTimer);
    // "closed" here was not our doing (close() fires no event): the broker ended it.
    if (pc.connectionState === "failed" || pc.connectionState === "closed") onFailed();
    else if (pc.connectionState === "disconnected") disconnectedTimer = setTimeout(onFailed, 6000);
    else if (pc.connectionState === "connected" && onConnected) onConnected();
  });
  (async () => {
    await pc.setLocalDescription(await pc.createOffer());
    sendSignal({ type: "offer", sdp: pc.localDescription.sdp });
  })().catch(onFailed);

  return {
    pc,
    audioSender,
    videoSender,
    async onSignal(signal) {
      if (signal.type === "answer") {
        await pc.setRemoteDescription({ type: "answer", sdp: signal.sdp });
      } else if (signal.type === "offer") {
        // The broker renegotiates when someone joins or leaves.
        await pc.setRemoteDescription({ type: "offer", sdp: signal.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        sendSignal({ type: "answer", sdp: pc.localDescription.sdp });
      } else if (signal.type === "ice" && signal.candidate) {
        await pc.addIceCandidate(signal.candidate);
      }
    },
    close() {
      clearTimeout(disconnectedTimer);
      pc.close();
    },
  };
}

function startMedia() {
  if (media || typeof RTCPeerConnection === "undefined") return;
  clearTimeout(mediaTimer);
  // The broker keeps our mode for the new connection too; after a reload it learns it here.
  if (linkMode !== "normal") send({ type: "link", mode: linkMode });
  media = connectMedia({
    iceServers: config.iceServers,
    stream: localStream,
    sendSignal: send,
    onRemoteTrack: showRemote,
    onFailed: mediaFailed,
    onConnected: () => {
      mediaRetries = 0;
      if ($("call-quality").dataset.problem) {
        delete $("call-quality").dataset.problem;
        $("call-quality").hidden = true;
      }
      applySending().catch((error) => console.warn("sending:", error));
    },
  });
}

/** The media connection broke (a phone moving from Wi-Fi to mobile data, a NAT forgetting
 * us) while the signaling socket may still be up: a new connection, soon, by itself. The
 * broker takes a new connection from the same participant in place of the old one. */
function mediaFailed() {
  stopMedia();
  if (state !== "admitted") return;
  $("call-quality").hidden = false;
  $("call-quality").dataset.problem = "media";
  $("call-quality").textContent = mediaRetries >= 5 ? t.mediaFailed : t.mediaReconnecting;
  const delay = Math.min(10000, 1000 * 2 ** mediaRetries);
  mediaRetries += 1;
  clearTimeout(mediaTimer);
  mediaTimer = setTimeout(() => {
    if (state === "admitted") startMedia();
  }, delay);
}

function stopMedia() {
  if (media) media.close();
  media = null;
  $("remote-videos").replaceChildren();
}

function showRemote(track, stream) {
  // Sound plays in a hidden <audio>; only pictures take a tile on the stage.
  const kind = track.kind === "audio" ? "audio" : "video";
  const id = `remote-${kind}-${stream ? stream.id : track.id}`;
  let element = document.getElementById(id);
  if (!element) {
    element = document.createElement(kind);
    element.id = id;
    element.autoplay = true;
    if (kind === "audio") element.hidden = true;
    else element.playsInline = true;
    $("remote-videos").append(element);
    stream?.addEventListener("removetrack", () => {
      if (stream.getTracks().length === 0) element.remove();
    });
  }
  // One track per element: a video element playing its stream's sound too would double it.
  if (!element.srcObject || element.srcObject.getTracks()[0] !== track) {
    element.srcObject = new MediaStream([track]);
  }
  element.play().catch((error) => {
    // A phone may refuse to start sound without a tap: offer the tap. (An AbortError only
    // means a newer source replaced this one: nothing to do.)
    if (error.name !== "NotAllowedError" || document.getElementById(`${id}-sound`)) return;
    if (kind === "video") {
      element.muted = true;
      element.play().catch(() => {});
    }
    const button = document.createElement("button");
    button.type = "button";
    button.id = `${id}-sound`;
    button.className = "call-sound";
    button.textContent = t.turnOnSound;
    button.addEventListener("click", () => {
      element.muted = false;
      element.play().catch(() => {});
      button.remove();
    });
    element.after(button);
  });
}

// --- connection quality -----------------------------------------------------------------------

async function measureQuality() {
  if (!media || state !== "admitted") return;
  let rtt = null;
  let lost = 0;
  let received = 0;
  let bitrate = null;
  const report = await media.pc.getStats();
  report.forEach((entry) => {
    if (entry.type === "candidate-pair" && entry.nominated && entry.currentRoundTripTime != null) {
      rtt = entry.currentRoundTripTime * 1000;
      if (entry.availableOutgoingBitrate != null) bitrate = entry.availableOutgoingBitrate / 1000;
    }
    if (entry.type === "inbound-rtp") {
      lost += entry.packetsLost || 0;
      received += entry.packetsReceived || 0;
    }
  });
  const loss = received + lost > 0 ? lost / (received + lost) : 0;
  if ($("call-quality").dataset.problem) return; // the reconnecting message stays
  const stats = { loss };
  if (rtt != null) stats.rtt = Math.round(rtt);
  if (bitrate != null) stats.kbps = Math.round(bitrate);
  send({ type: "quality", stats });
  const level = loss > 0.05 || (rtt ?? 0) > 600 || (bitrate ?? Infinity) < 150 ? "poor" : loss > 0.01 || (rtt ?? 0) > 300 ? "fair" : "good";
  // Poor twice in a row (10 s): propose weak-link mode, once, unless already chosen.
  poorMeasurements = level === "poor" ? poorMeasurements + 1 : 0;
  if (poorMeasurements >= 2 && linkMode === "normal" && !proposalDismissed) $("call-proposal").hidden = false;
  $("call-quality").hidden = false;
  $("call-quality").dataset.level = level;
  $("call-quality").textContent = t[`quality_${level}`];
}

function markQuality(key, stats) {
  const item = document.querySelector(`#participants li[data-key="${CSS.escape(key)}"]`);
  if (item) item.title = `loss ${Math.round((stats.loss || 0) * 100)} %, rtt ${stats.rtt ?? "?"} ms`;
}

setInterval(() => measureQuality().catch(() => {}), QUALITY_MS);

// --- start ------------------------------------------------------------------------------------

show("connecting", t.connecting);
startCamera().finally(connect);
