// Live health-diary alerts on a clinician's dashboard card: a WebSocket to ws/alerts/,
// reconnecting with a growing pause; nothing is lost while it is down, because the card is
// rendered from the database on every page load.
const card = document.getElementById("diary-alerts");

function start() {
  const list = card.querySelector("[data-role=list]");
  const empty = card.querySelector("[data-role=empty]");
  const template = card.querySelector("template[data-role=alert-template]");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let pause = 2000;
  let pinger = null;

  function refreshEmpty() {
    empty.hidden = list.children.length > 0;
  }

  function addAlert(alert) {
    if (list.querySelector(`[data-alert-id="${alert.id}"]`)) return;
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.alertId = alert.id;
    item.classList.add("diary-alert-new");
    const patient = item.querySelector("[data-role=patient]");
    patient.href = alert.diary_url;
    patient.textContent = alert.patient_name;
    const label = alert.measure_label || alert.measure;
    item.querySelector("[data-role=what]").textContent =
      `${label.charAt(0).toUpperCase()}${label.slice(1)}: ${alert.message}`;
    item.querySelector("[data-role=when]").textContent = new Date(alert.created_at).toLocaleString(
      document.documentElement.lang || undefined,
      { dateStyle: "short", timeStyle: "short" },
    );
    item.querySelector("form").action = alert.ack_url;
    list.prepend(item);
    refreshEmpty();
  }

  function removeAlert(alertId) {
    const item = list.querySelector(`[data-alert-id="${alertId}"]`);
    if (item) item.remove();
    refreshEmpty();
  }

  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}${card.dataset.wsPath}`);
    socket.addEventListener("open", () => {
      pause = 2000;
      // Mobile networks and proxies drop sockets that stay silent.
      pinger = setInterval(() => socket.send(JSON.stringify({ type: "ping" })), 25000);
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "alert") addAlert(message.alert);
      if (message.type === "acknowledged") removeAlert(message.alert_id);
    });
    socket.addEventListener("close", (event) => {
      clearInterval(pinger);
      if (event.code === 4401 || event.code === 4403) return; // not for this user: stop
      setTimeout(connect, pause);
      pause = Math.min(pause * 2, 60000);
    });
  }

  connect();
}

if (card && "WebSocket" in window) start();
