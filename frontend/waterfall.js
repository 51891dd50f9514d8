// One turn's latency waterfall from its turn.metrics (server stamps, ms after the user's last speech
// sample reached the server) and the page's own voice-to-voice figure (AudioContext clock).
const STAGES = [
  // [stamp, label, the stamp its bar starts from]
  ["endpoint", "endpoint", null],
  ["asr_final", "ASR final", null],
  ["llm_first_token", "LLM first token", "asr_final"],
  ["first_clause", "first clause", "llm_first_token"],
  ["tts_first_audio", "TTS first audio", "first_clause"],
  ["audio_first_sent", "first audio sent", "tts_first_audio"],
];

function row(label, fromMs, toMs, scaleMs, kind) {
  const el = document.createElement("div");
  el.className = "wf-row";
  const name = document.createElement("span");
  name.className = "wf-label";
  name.textContent = label;
  const track = document.createElement("div");
  track.className = "wf-track";
  const bar = document.createElement("div");
  bar.className = `wf-bar ${kind}`;
  bar.style.left = `${(100 * Math.max(0, fromMs)) / scaleMs}%`;
  bar.style.width = `${Math.max(0.5, (100 * (toMs - Math.max(0, fromMs))) / scaleMs)}%`;
  track.append(bar);
  const ms = document.createElement("span");
  ms.className = "wf-ms";
  ms.textContent = `${Math.round(toMs)} ms`;
  el.append(name, track, ms);
  return el;
}

export function renderWaterfall(turnId, metrics, v2vMs) {
  const t = metrics.timeline_ms || {};
  const shown = STAGES.filter(([stamp]) => typeof t[stamp] === "number");
  const ends = shown.map(([stamp]) => t[stamp]);
  if (typeof v2vMs === "number") ends.push(v2vMs);
  const scaleMs = Math.max(250, Math.ceil(Math.max(...ends, 0) / 250) * 250);
  const figure = document.createElement("figure");
  figure.className = "waterfall";
  figure.dataset.turn = turnId;
  const caption = document.createElement("figcaption");
  caption.textContent =
    typeof v2vMs === "number"
      ? `Turn ${turnId}: voice to voice ${Math.round(v2vMs)} ms`
      : `Turn ${turnId}: voice to voice not measured`;
  figure.append(caption);
  if (typeof v2vMs === "number") figure.append(row("voice to voice", 0, v2vMs, scaleMs, "v2v"));
  for (const [stamp, label, from] of shown) {
    const start = from && typeof t[from] === "number" ? t[from] : 0;
    const kind = stamp === "endpoint" ? "endpoint" : "stage";
    figure.append(row(label, Math.min(start, t[stamp]), t[stamp], scaleMs, kind));
  }
  const axis = document.createElement("div");
  axis.className = "wf-axis";
  axis.textContent = `0 – ${scaleMs} ms after your last word reached the server`;
  figure.append(axis);
  return figure;
}
