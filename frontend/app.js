// The voice chat page: connect, talk, see what was understood and said, and where the time went.
import { Media, MicrophoneError } from "./media.js";
import { connectRtc } from "./rtc.js";
import { Session } from "./session.js";
import { renderWaterfall } from "./waterfall.js";

const AUDIBLE = 0.01; // -40 dBFS: the threshold LATENCY.md uses for "audible"
const $ = (id) => document.getElementById(id);

// What the page knows, also read by the browser tests (window.voxloop).
const state = {
  phase: "idle", // idle | connecting | live | reconnecting
  transport: null, // the audio path in use: "webrtc" | "websocket"
  fallbackReason: null,
  turns: {}, // turnId -> {user, agent, heard, interrupted, v2vMs, metrics}
  clears: 0,
  voice: null, // the voice the agent speaks in now
  voices: [], // [{id, name, description}] from GET /v1/voices
  preview: null, // the last preview: {voice, seconds, played}
  errors: [],
  rtcStats: null, // WebRTC: the browser's inbound-rtp audio statistics after the latest turn
  inputPeak: 0,
  outputPeak: 0,
  maxOutputPeak: 0,
  lastOutputLoudAt: null,
  lastVoiceAt: null, // AudioContext time of the last loud microphone sample
  overlapAt: null, // ... of the first loud microphone sample while the agent was audible (barge-in)
  pendingV2v: null, // {turnId, speechEndAt}
};
window.voxloop = state;

let media = null;
let session = null;
let peer = null;

const PLAIN = {
  asr_failed: "The speech recognizer failed on that turn. Please say it again.",
  llm_failed: "The language model failed while answering. Please ask again.",
  tts_failed: "The voice failed while speaking the answer. Please ask again.",
  bad_voice: "That voice is not on this server; the agent keeps the voice it has.",
  utterance_too_long: "That was a long turn: the agent answered what it heard so far.",
  text_too_long: "That message is too long for one turn.",
  empty_text: "Type something first.",
  unknown_profile: "The server does not know that turn-taking profile.",
  internal_error: "Something went wrong on the server. If it keeps happening, hang up and connect again.",
};

// -- settings ---------------------------------------------------------------------------------------
const SETTINGS_KEY = "voxloop.settings";
function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}");
    if (saved.transport) $("transport").value = saved.transport;
    if (saved.profile) $("profile").value = saved.profile;
    if (saved.persona) $("persona").value = saved.persona;
    if (saved.voice) state.savedVoice = saved.voice;
  } catch {
    /* a broken entry is ignored */
  }
  const wanted = new URLSearchParams(location.search).get("transport");
  if (["auto", "webrtc", "websocket"].includes(wanted)) $("transport").value = wanted;
}
function settings() {
  const voice = state.voice || state.savedVoice || null;
  return { transport: $("transport").value, profile: $("profile").value, persona: $("persona").value.trim(), voice };
}
function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings()));
}

// -- the page ---------------------------------------------------------------------------------------
function setPhase(phase, text) {
  state.phase = phase;
  const pill = $("status");
  pill.dataset.phase = phase;
  pill.textContent = text;
  const live = phase !== "idle";
  $("connect").textContent = live ? "Hang up" : "Connect";
  $("connect").dataset.live = String(live);
  for (const id of ["text", "send", "stop"]) $(id).disabled = phase !== "live";
}

function notice(text, kind = "error") {
  const el = $("notice");
  el.hidden = !text;
  el.textContent = text || "";
  el.className = `notice ${kind === "info" ? "info" : ""}`;
}

function turn(turnId) {
  if (!state.turns[turnId]) state.turns[turnId] = { turnId, user: "", agent: "", heard: null, interrupted: false };
  return state.turns[turnId];
}

function bubble(turnId, who) {
  const id = `msg-${who}-${turnId}`;
  let el = document.getElementById(id);
  if (!el) {
    const hint = document.querySelector(".transcript .hint");
    if (hint) hint.remove();
    el = document.createElement("li");
    el.id = id;
    el.className = `msg ${who}`;
    $("transcript").append(el);
  }
  return el;
}

function scrollDown() {
  const list = $("transcript");
  list.scrollTop = list.scrollHeight;
}

function setLevel(id, peak) {
  const pct = Math.min(100, Math.round(100 * Math.sqrt(peak)));
  $(id).style.width = `${pct}%`;
  $(id).parentElement.setAttribute("aria-valuenow", String(pct));
}

// -- voices -----------------------------------------------------------------------------------------
// The select lists the session's voices by name (GET /v1/voices); choosing one tells the session at
// once (the next answer speaks in it); Preview plays a short sample from the speech API.
async function showVoices(ids, current) {
  const r = await fetch("/v1/voices");
  const listed = r.ok ? (await r.json()).data : [];
  const byId = Object.fromEntries(listed.map((v) => [v.id, v]));
  state.voices = ids.map((id) => ({ id, name: byId[id] ? byId[id].name : id, description: byId[id] ? byId[id].description : "" }));
  const select = $("voice");
  select.replaceChildren(...state.voices.map((v) => new Option(v.name, v.id)));
  state.voice = current;
  select.value = current;
  select.disabled = false;
  $("preview").disabled = false;
  describeVoice();
  const wanted = state.savedVoice;
  if (wanted && wanted !== current && ids.includes(wanted)) chooseVoice(wanted);
}

function describeVoice() {
  const v = state.voices.find((x) => x.id === state.voice);
  $("voice-about").textContent = v ? v.description : "";
}

function chooseVoice(id) {
  state.voice = id;
  $("voice").value = id;
  describeVoice();
  saveSettings();
  if (session) {
    session.send({ type: "session.update", voice: id });
    session.update = { ...session.update, voice: id };
  }
}

async function previewVoice() {
  const id = $("voice").value;
  const v = state.voices.find((x) => x.id === id);
  const r = await fetch("/v1/audio/speech", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input: `Hello, I am ${v ? v.name : id}. This is how I sound.`, voice: id, response_format: "wav" }),
  });
  if (!r.ok) throw new Error((await r.json()).error.message);
  const blob = await r.blob();
  const player = new Audio(URL.createObjectURL(blob));
  state.preview = { voice: id, seconds: null, played: false };
  player.addEventListener("loadedmetadata", () => (state.preview.seconds = player.duration));
  player.addEventListener("ended", () => {
    state.preview.played = true;
    URL.revokeObjectURL(player.src);
  });
  await player.play();
}

// -- server events ----------------------------------------------------------------------------------
function attach(s) {
  const on = (type, fn) => s.addEventListener(type, (e) => fn(e.detail));
  on("session.ready", (m) => {
    $("profile").value = m.profile;
    showVoices(m.voices || [], m.voice).catch((e) => notice(`Could not list the voices: ${e.message}`));
  });
  on("speech.started", (m) => {
    $("you-speaker").dataset.active = "true";
    const el = bubble(m.turn_id, "user");
    if (!turn(m.turn_id).user) {
      el.classList.add("partial");
      el.textContent = "…";
    }
    scrollDown();
  });
  on("transcript.partial", (m) => {
    const el = bubble(m.turn_id, "user");
    el.classList.add("partial");
    el.textContent = m.text;
  });
  on("speech.stopped", (m) => {
    $("you-speaker").dataset.active = "false";
    state.pendingV2v = { turnId: m.turn_id, speechEndAt: state.lastVoiceAt };
  });
  on("transcript.final", (m) => {
    turn(m.turn_id).user = m.text;
    const el = bubble(m.turn_id, "user");
    el.classList.remove("partial");
    if (m.text.trim()) el.textContent = m.text;
    else el.remove();
    scrollDown();
  });
  on("response.started", (m) => {
    bubble(m.turn_id, "agent").textContent = "";
  });
  on("response.text.delta", (m) => {
    const t = turn(m.turn_id);
    t.agent += m.text;
    bubble(m.turn_id, "agent").textContent = t.agent;
    scrollDown();
  });
  on("response.audio.started", (m) => {
    turn(m.turn_id).audioStarted = true;
    if (media) media.playTurn(m.turn_id);
  });
  on("binary", (buffer) => media && media.play(buffer));
  on("audio.clear", () => {
    state.clears += 1;
    if (media) media.clear();
  });
  on("response.done", (m) => {
    const t = turn(m.turn_id);
    t.heard = m.text;
    t.interrupted = m.interrupted;
    const el = bubble(m.turn_id, "agent");
    if (!m.interrupted) {
      if (m.text) el.textContent = m.text;
      else if (!t.agent) el.remove();
      return;
    }
    const said = t.agent.trim();
    const rest = said.startsWith(m.text) ? said.slice(m.text.length) : "";
    el.replaceChildren(document.createTextNode(m.text));
    if (rest) {
      const cut = document.createElement("span");
      cut.className = "unheard";
      cut.textContent = rest;
      el.append(cut);
    }
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "interrupted: you heard the part not struck out";
    el.append(tag);
  });
  on("turn.metrics", (m) => {
    const t = turn(m.turn_id);
    t.metrics = m;
    const box = $("waterfalls");
    const first = box.querySelector("p.small");
    if (first) first.remove();
    box.append(renderWaterfall(m.turn_id, m, t.v2vMs));
    if (peer) recordRtcStats(peer);
  });
  on("error", (m) => {
    state.errors.push(m);
    notice(PLAIN[m.code] || m.message);
  });
  on("open", () => {
    if (state.phase === "reconnecting") setPhase("connecting", "Reconnecting…");
  });
  on("close", ({ code, willRetry }) => {
    if (state.phase === "idle") return;
    if (peer) {
      peer.close();
      peer = null;
    }
    if (willRetry) {
      setPhase("reconnecting", "Connection lost: reconnecting…");
      notice(
        code === 1009
          ? "The server closed the connection: a message was too large. Reconnecting…"
          : "The connection to the server dropped. Reconnecting…",
        "info",
      );
    }
  });
}

// The browser's view of the agent's WebRTC audio: concealed samples are glitches it had to hide,
// jitterBufferDelay / emitted count is how long a sample waited in its jitter buffer on average.
async function recordRtcStats(pc) {
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      state.rtcStats = {
        concealedSamples: s.concealedSamples,
        totalSamplesReceived: s.totalSamplesReceived,
        jitterBufferMs: s.jitterBufferEmittedCount ? (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount : null,
        packetsLost: s.packetsLost,
      };
    }
  });
}

// -- audio levels and the page's own latency figure -----------------------------------------------
function watchLevels(m) {
  m.addEventListener("input-level", (e) => {
    const { peak, firstLoud, lastLoud } = e.detail;
    state.inputPeak = peak;
    if (lastLoud !== null) state.lastVoiceAt = lastLoud;
    const agentAudible = state.lastOutputLoudAt !== null && firstLoud !== null && firstLoud - state.lastOutputLoudAt < 0.1;
    if (agentAudible && state.overlapAt === null) state.overlapAt = firstLoud;
    setLevel("in-level", peak);
  });
  m.addEventListener("output-level", (e) => {
    const { peak, firstLoud, lastLoud, time } = e.detail;
    state.outputPeak = peak;
    state.maxOutputPeak = Math.max(state.maxOutputPeak, peak);
    setLevel("out-level", peak);
    if (lastLoud !== null) state.lastOutputLoudAt = lastLoud;
    const speaking = state.lastOutputLoudAt !== null && time - state.lastOutputLoudAt < 0.25;
    $("agent-speaker").dataset.active = String(speaking);
    const pending = state.pendingV2v;
    if (pending && firstLoud !== null) {
      const t = turn(pending.turnId);
      if (pending.speechEndAt !== null) t.v2vMs = (firstLoud - pending.speechEndAt) * 1000;
      state.pendingV2v = null;
    }
  });
  m.addEventListener("played", (e) => {
    const { turnId, seconds } = e.detail;
    if (session) session.send({ type: "playback.position", turn_id: turnId, played_s: Math.round(seconds * 1000) / 1000 });
  });
}

// -- connecting -------------------------------------------------------------------------------------
function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

async function open(audio) {
  const s = new Session(wsUrl());
  attach(s);
  const { profile, persona } = settings();
  // getUserMedia cancels the echo in the browser (media.js), so the server needs no AEC of its own.
  const update = {
    type: "session.update", audio, input_sample_rate: 48000, output_sample_rate: 48000, profile, echo_cancelled: true,
  };
  if (persona) update.system_prompt = persona;
  const { voice } = settings();
  if (voice) update.voice = voice;
  const ready = s.next("session.ready", 10000);
  s.open(update);
  try {
    await ready;
    if (audio === "webrtc") {
      await startRtc(s);
      // A reconnect makes a new session: it needs a new peer too.
      s.addEventListener("session.ready", () => {
        if (state.phase !== "idle") startRtc(s).catch((e) => notice(`WebRTC did not reconnect: ${e.message}`));
      });
    }
  } catch (e) {
    s.close();
    throw e;
  }
  s.addEventListener("session.ready", () => setPhase("live", liveText()));
  return s;
}

async function startRtc(s) {
  if (peer) peer.close();
  const { pc, remote } = await connectRtc(s, media.micTrack);
  peer = pc;
  media.playRemote(remote, $("remote"));
}

function liveText() {
  return `Live · ${state.transport === "webrtc" ? "WebRTC" : "WebSocket"}`;
}

async function connect() {
  saveSettings();
  notice("");
  setPhase("connecting", "Connecting…");
  media = new Media();
  watchLevels(media);
  try {
    await media.start();
  } catch (e) {
    hangUp();
    notice(e instanceof MicrophoneError ? e.message : `The audio could not start: ${e.message}`);
    return;
  }
  const wanted = settings().transport;
  try {
    if (wanted !== "websocket") {
      try {
        session = await open("webrtc");
        state.transport = "webrtc";
      } catch (e) {
        if (wanted === "webrtc") throw e;
        state.fallbackReason = e.message;
        notice(`WebRTC did not connect (${e.message}); using WebSocket audio instead.`, "info");
      }
    }
    if (!session) {
      session = await open("websocket");
      state.transport = "websocket";
      media.startPcm((frame) => session && session.sendAudio(frame));
    }
  } catch (e) {
    hangUp();
    notice(`Could not connect to the voice server: ${e.message}. Is it running?`);
    return;
  }
  setPhase("live", liveText());
}

function hangUp() {
  if (session) session.close();
  if (peer) peer.close();
  if (media) media.stop();
  session = peer = media = null;
  state.transport = null;
  state.pendingV2v = null;
  setPhase("idle", "Not connected");
  $("you-speaker").dataset.active = $("agent-speaker").dataset.active = "false";
  setLevel("in-level", 0);
  setLevel("out-level", 0);
}

// -- controls ---------------------------------------------------------------------------------------
$("connect").addEventListener("click", () => (state.phase === "idle" ? connect() : hangUp()));
$("typed").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !session) return;
  session.send({ type: "text.input", text });
  $("text").value = "";
});
$("stop").addEventListener("click", () => session && session.send({ type: "response.cancel" }));
$("voice").addEventListener("change", () => chooseVoice($("voice").value));
$("preview").addEventListener("click", () => previewVoice().catch((e) => notice(`The preview failed: ${e.message}`)));
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  saveSettings();
  if (!session) return;
  const { profile, persona } = settings();
  const update = { type: "session.update", profile };
  if (persona) update.system_prompt = persona;
  session.send(update);
  session.update = { ...session.update, profile, ...(persona ? { system_prompt: persona } : {}) };
  notice("Settings applied.", "info");
});
loadSettings();
setPhase("idle", "Not connected");
