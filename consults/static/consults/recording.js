// Recording on the call page: everyone's consent checkbox, the doctors' Start/Stop button,
// and a recording indicator everyone sees. Imported by session.js; listens to the messages
// session.js dispatches as "signal" events on #session, sends through window.telemedSession.
// Messages: consent {given}, record {action: "start"|"stop"} from here; "recording"
// {recording, recording_id, started_by, consents: {key: bool}, reason, as_of} from the server
// (consults/services/recording.py).

const page = document.getElementById("session");
const config = JSON.parse(document.getElementById("session-config").textContent);
const t = config.strings;
const $ = (id) => document.getElementById(id);

const names = new Map(); // participant key -> name, from the participant lists
let last = null; // the last "recording" message
// This person's tick, until a "recording" message shows the server has it: a participant
// list arriving in between must not untick the box under their finger.
let pendingConsent = null;

function send(message) {
  if (window.telemedSession) window.telemedSession.send(message);
}

function render() {
  const region = $("recording");
  if (!region || !last) return;
  region.hidden = false;
  const consents = last.consents || {};
  const everyone = Object.keys(consents).length > 0 && Object.values(consents).every(Boolean);

  const indicator = $("recording-indicator");
  indicator.hidden = !last.recording;
  indicator.textContent = last.recording ? t.recordingOn.replace("{name}", last.started_by || "") : "";
  page.dataset.recording = last.recording ? "on" : "off";

  const consent = $("recording-consent");
  const given = Boolean(consents[config.participantKey]);
  if (pendingConsent === given) pendingConsent = null;
  consent.checked = pendingConsent ?? given;

  const button = $("btn-record");
  button.hidden = !config.isClinician;
  button.textContent = last.recording ? t.stopRecording : t.startRecording;
  button.disabled = !last.recording && !everyone;
  button.title = button.disabled ? t.recordingNeedsConsent : "";

  const list = $("recording-consents");
  list.replaceChildren();
  for (const [key, given] of Object.entries(consents)) {
    const item = document.createElement("li");
    item.dataset.consent = given ? "yes" : "no";
    const name = names.get(key) || key;
    item.textContent = `${key === config.participantKey ? `${name} (${t.you})` : name}: ${given ? t.consentGiven : t.consentMissing}`;
    list.append(item);
  }
  const note = $("recording-note");
  note.textContent = last.reason ? t[`recordingStopped_${last.reason}`] || t.recordingStopped_stopped : "";
}

page.addEventListener("signal", (event) => {
  const message = event.detail;
  if (message.type === "joined" || message.type === "participants") {
    for (const person of message.participants || []) names.set(person.participant_key, person.name);
    if (message.state && message.state !== "admitted") {
      const region = $("recording");
      if (region) region.hidden = true;
      return;
    }
    render();
  } else if (message.type === "recording") {
    // Two moves at once send two states; the one read earlier may arrive later: keep the
    // latest read.
    if (last && message.as_of < last.as_of) return;
    last = message;
    render();
  } else if (message.type === "error" && pendingConsent !== null) {
    pendingConsent = null; // refused: show what the server holds
    render();
  }
});

// Module scripts run once the page is parsed: the elements are there.
$("recording-consent").addEventListener("change", (event) => {
  pendingConsent = event.target.checked;
  send({ type: "consent", given: event.target.checked });
});
$("btn-record").addEventListener("click", () => {
  send({ type: "record", action: last && last.recording ? "stop" : "start" });
});
