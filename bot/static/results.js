// StemBot results page: one shared transport over one <audio> per track, waveforms, and the expiry countdown.
// Switching tracks hands the position over, so the stems can be A/B'd against the full mix at the same moment.
(() => {
  "use strict";

  const root = document.querySelector("[data-player]");
  if (!root) return;
  const html = document.documentElement;

  const audios = new Map();
  for (const audio of root.querySelectorAll("audio[data-track]")) audios.set(audio.dataset.track, audio);
  const keys = [...audios.keys()];
  if (!keys.length) return;
  const hasMix = audios.has("original");
  let active = keys[0];
  let lastStem = keys.find((k) => k !== "original") || active;
  let peaks = {};
  let scrubbing = false;

  const playButton = root.querySelector("[data-play]");
  const seek = root.querySelector("[data-seek]");
  const timeNow = root.querySelector("[data-time]");
  const timeTotal = root.querySelector("[data-total]");

  const current = () => audios.get(active);
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

  function duration() {
    const d = current().duration;
    return Number.isFinite(d) && d > 0 ? d : Number(root.dataset.duration) || 0;
  }

  function clockText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }

  // --- transport ---------------------------------------------------------------------------------------------

  function select(key) {
    if (!audios.has(key) || key === active) return;
    const from = current(), to = audios.get(key);
    const position = from.currentTime, playing = !from.paused;
    from.pause();
    setTime(to, position);
    active = key;
    if (key !== "original") lastStem = key;
    if (playing) to.play().catch(() => {});
    update();
  }

  function setTime(audio, seconds) {
    // Some mobile browsers ignore a position set before the metadata is in (they load nothing until asked).
    if (audio.readyState >= 1) audio.currentTime = seconds;
    else audio.addEventListener("loadedmetadata", () => { audio.currentTime = seconds; }, { once: true });
  }

  function toggleSoloMix() {
    if (active === "original") select(lastStem);
    else if (hasMix) select("original");
  }

  function togglePlay() {
    const audio = current();
    if (audio.paused) audio.play().catch(() => {});
    else audio.pause();
  }

  function seekTo(seconds) {
    current().currentTime = clamp(seconds, 0, duration());
    update();
  }

  function update() {
    const audio = current(), total = duration(), position = audio.currentTime;
    const playing = !audio.paused && !audio.ended;
    html.classList.toggle("is-playing", playing);
    playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
    timeNow.textContent = clockText(position);
    timeTotal.textContent = clockText(total);
    if (!scrubbing) seek.value = String(total ? Math.round((position / total) * 1000) : 0);
    seek.setAttribute("aria-valuetext", `${clockText(position)} of ${clockText(total)}`);
    for (const button of root.querySelectorAll("[data-select]")) {
      button.setAttribute("aria-pressed", String(button.dataset.select === active));
    }
    for (const button of root.querySelectorAll("[data-solo]")) {
      button.setAttribute("aria-pressed", String(button.dataset.solo === active));
    }
    for (const card of root.querySelectorAll("[data-card]")) {
      card.classList.toggle("is-active", card.dataset.card === active);
    }
    root.dataset.active = active;
    drawAll(total ? position / total : 0);
  }

  // Smooth playhead while playing; `timeupdate` alone fires only about 4 times a second.
  function frame() {
    update();
    if (!current().paused) requestAnimationFrame(frame);
  }

  for (const [key, audio] of audios) {
    audio.addEventListener("play", () => {
      // Only the selected track may sound (a lock-screen control could start another).
      if (key !== active) audio.pause();
      else requestAnimationFrame(frame);
    });
    for (const type of ["pause", "ended", "timeupdate", "loadedmetadata", "durationchange", "seeked"]) {
      audio.addEventListener(type, () => { if (key === active) update(); });
    }
  }

  playButton.addEventListener("click", togglePlay);
  seek.addEventListener("input", () => {
    scrubbing = true;
    seekTo((Number(seek.value) / 1000) * duration());
  });
  seek.addEventListener("change", () => { scrubbing = false; update(); });
  for (const button of root.querySelectorAll("[data-select]")) {
    button.addEventListener("click", () => select(button.dataset.select));
  }
  for (const button of root.querySelectorAll("[data-solo]")) {
    // Solo on the selected stem goes back to the mix, like a mixer's solo switch.
    button.addEventListener("click", () => {
      const key = button.dataset.solo;
      if (key === active && key !== "original") toggleSoloMix();
      else select(key);
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
    const onControl = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
    if ((event.key === " " || event.key === "k") && !onControl) togglePlay();
    else if (event.key === "ArrowLeft") seekTo(current().currentTime - 5);
    else if (event.key === "ArrowRight") seekTo(current().currentTime + 5);
    else if (event.key === "s" || event.key === "m") toggleSoloMix();
    else if (/^[1-9]$/.test(event.key) && keys[Number(event.key) - 1]) select(keys[Number(event.key) - 1]);
    else return;
    event.preventDefault();
  });

  if ("mediaSession" in navigator) {
    navigator.mediaSession.metadata = new MediaMetadata({ title: root.dataset.title || "", artist: "StemBot" });
    navigator.mediaSession.setActionHandler("play", togglePlay);
    navigator.mediaSession.setActionHandler("pause", togglePlay);
    navigator.mediaSession.setActionHandler("seekto", (details) => seekTo(details.seekTime || 0));
  }

  // --- waveforms ---------------------------------------------------------------------------------------------

  const waves = [...root.querySelectorAll("[data-wave]")].map((box) => ({
    key: box.dataset.wave, box, canvas: box.querySelector("canvas"),
  }));

  function color(element, name) {
    return getComputedStyle(element).getPropertyValue(name).trim() || "#888";
  }

  function drawWave(wave, progress) {
    const { canvas, box, key } = wave;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(box.clientWidth * ratio));
    const height = Math.max(1, Math.round(box.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const played = color(box, "--kind"), idle = color(box, "--wave-idle");
    const isActive = key === active;
    const data = peaks[key] || { peak: [], rms: [] };
    const step = 4 * ratio, bar = 2.5 * ratio, mid = height / 2;
    const bars = Math.max(1, Math.floor(width / step));
    const playhead = progress * width;
    for (let i = 0; i < bars; i++) {
      const from = Math.floor((i * data.peak.length) / bars);
      const to = Math.max(from + 1, Math.floor(((i + 1) * data.peak.length) / bars));
      let peak = 0, rms = 0;
      for (let j = from; j < to && j < data.peak.length; j++) {
        peak = Math.max(peak, data.peak[j]);
        rms = Math.max(rms, data.rms[j]);
      }
      const x = i * step;
      const fill = x < playhead ? played : idle;
      const h = Math.max(ratio, (peak / 100) * (height - 2 * ratio));
      const r = Math.max(ratio, (rms / 100) * (height - 2 * ratio));
      ctx.globalAlpha = isActive ? 0.45 : 0.3;
      ctx.fillStyle = fill;
      ctx.fillRect(x, mid - h / 2, bar, h);
      ctx.globalAlpha = isActive ? 1 : 0.55;
      ctx.fillRect(x, mid - r / 2, bar, r);
    }
    ctx.globalAlpha = 1;
    if (progress > 0) {
      ctx.fillStyle = isActive ? color(box, "--text") : idle;
      ctx.fillRect(Math.min(playhead, width - ratio), 0, Math.max(1, ratio), height);
    }
  }

  function drawAll(progress) {
    for (const wave of waves) drawWave(wave, progress);
  }

  for (const wave of waves) {
    // Press on a waveform to listen to that track from there, drag to scrub. On touch screens the seek waits for
    // the tap to end or a sideways drag (the box allows vertical panning), so scrolling past never jumps.
    const { box } = wave;
    let startX = null;
    const scrub = (event) => {
      select(wave.key);
      seekTo(clamp((event.clientX - box.getBoundingClientRect().left) / box.clientWidth, 0, 1) * duration());
    };
    box.addEventListener("pointerdown", (event) => {
      startX = event.clientX;
      if (event.pointerType === "mouse") {
        box.setPointerCapture(event.pointerId);
        scrub(event);
      }
    });
    box.addEventListener("pointermove", (event) => {
      if (startX === null) return;
      if (event.pointerType === "mouse" || Math.abs(event.clientX - startX) > 8) scrub(event);
    });
    box.addEventListener("pointerup", (event) => {
      if (startX !== null && event.pointerType !== "mouse") scrub(event);
      startX = null;
    });
    box.addEventListener("pointercancel", () => { startX = null; });
  }
  window.addEventListener("resize", () => update());

  fetch(root.dataset.peaksUrl, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : { tracks: {} }))
    .then((body) => { peaks = body.tracks || {}; })
    .catch(() => {})
    .finally(() => { root.dataset.waveforms = "ready"; update(); });

  // --- expiry countdown (against the server's clock, whatever the device's says) --------------------------------

  const countdown = document.querySelector("[data-countdown]");
  const expires = Number(root.dataset.expires);
  const skew = Number(root.dataset.now) - Date.now();
  for (const element of document.querySelectorAll("[data-expires-at]")) {
    // In the visitor's own time zone (the server wrote UTC).
    element.textContent = new Date(expires).toLocaleString([], {
      weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  function tick() {
    const left = expires - (Date.now() + skew);
    if (left <= 0) {
      clearInterval(timer);
      for (const audio of audios.values()) audio.pause();
      html.classList.add("is-expired");
      countdown.textContent = "now";
      setTimeout(() => location.reload(), 2000); // the server now answers with the "files were deleted" page
      return;
    }
    countdown.textContent = clockText(left / 1000);
  }
  const timer = setInterval(tick, 1000);
  tick();
  update();
})();

// Practice mixer: every partition stem plays at once on one clock (the first stem's), each through its own gain;
// tempo changes the playback rate with the pitch kept; A/B loops a passage. The key shift, and "download this mix",
// are rendered on the server by ffmpeg from the same settings (GET …/mix.mp3?gain.<stem>=…&tempo=…&semitones=…).
(() => {
  "use strict";

  const mixer = document.querySelector("[data-mixer]");
  if (!mixer) return;
  const rows = [...mixer.querySelectorAll("[data-mix-stem]")].map((row) => ({
    key: row.dataset.mixStem,
    row,
    audio: row.querySelector("audio"),
    balance: Number(row.dataset.balance) || 1,
    volume: row.querySelector("[data-volume]"),
    volumeText: row.querySelector("[data-volume-text]"),
    mute: row.querySelector("[data-mute]"),
    solo: row.querySelector("[data-solo-stem]"),
    muted: false,
    soloed: false,
    node: null, // its GainNode, once the audio graph exists
  }));
  if (!rows.length) return;
  const $ = (selector) => mixer.querySelector(selector);
  const start = $("[data-mix-start]"), seek = $("[data-mix-seek]"), time = $("[data-mix-time]");
  const tempo = $("[data-tempo]"), tempoText = $("[data-tempo-text]");
  const semitones = $("[data-semitones]"), semitonesText = $("[data-semitones-text]");
  const loopToggle = $("[data-loop-toggle]"), loopClear = $("[data-loop-clear]"), loopText = $("[data-loop-text]");
  const loopBand = $("[data-loop-band]"), keyNote = $("[data-key-note]"), status = $("[data-mix-status]");
  const preview = $("[data-mix-preview]"), render = $("[data-mix-render]");
  const downloads = [...mixer.querySelectorAll("[data-mix-download]")];
  const page = document.querySelector("[data-player]");
  const total = Number(page && page.dataset.duration) || 0;
  const master = rows[0].audio;
  const loop = { a: null, b: null, on: false };
  let context = null, running = false, scrubbing = false;

  const clockText = (s) => {
    s = Math.max(0, Math.floor(s));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  const duration = () => (Number.isFinite(master.duration) && master.duration > 0 ? master.duration : total);

  // --- gains: solo wins over mute, as on a mixing desk ----------------------------------------------------------

  function gainOf(row) {
    const anySolo = rows.some((r) => r.soloed);
    const audible = anySolo ? row.soloed : !row.muted;
    return audible ? Number(row.volume.value) / 100 : 0;
  }

  function applyGains() {
    for (const row of rows) {
      const gain = gainOf(row);
      row.row.dataset.gain = String(gain); // what is heard, before the stem's balance (read by the tests too)
      row.row.classList.toggle("is-silent", gain === 0);
      row.mute.setAttribute("aria-pressed", String(row.muted));
      row.solo.setAttribute("aria-pressed", String(row.soloed));
      row.volumeText.textContent = `${row.volume.value}%`;
      const level = gain * row.balance;
      if (row.node) row.node.gain.value = level;
      else row.audio.volume = Math.min(1, level); // without Web Audio (and iOS ignores this): best effort
    }
    updateLinks();
  }

  function ensureGraph() {
    // Created on the first press (browsers keep audio contexts suspended until a gesture).
    if (context || !window.AudioContext) return;
    context = new AudioContext();
    for (const row of rows) {
      row.node = context.createGain();
      context.createMediaElementSource(row.audio).connect(row.node).connect(context.destination);
      row.audio.volume = 1;
    }
    applyGains();
  }

  // --- transport on one clock --------------------------------------------------------------------------------------

  function seekAll(seconds) {
    const t = Math.min(Math.max(0, seconds), duration());
    for (const { audio } of rows) audio.currentTime = t;
    draw();
  }

  async function play() {
    ensureGraph();
    if (context && context.state === "suspended") await context.resume().catch(() => {});
    for (const audio of document.querySelectorAll("audio[data-track], [data-mix-preview]")) audio.pause();
    const t = master.currentTime;
    if (loop.on && (t < loop.a || t >= loop.b)) seekAll(loop.a);
    for (const { audio } of rows) audio.preload = "auto";
    running = true;
    await Promise.all(rows.map(({ audio }) => audio.play().catch(() => {})));
    requestAnimationFrame(frame);
    draw();
  }

  function pause() {
    running = false;
    for (const { audio } of rows) audio.pause();
    draw();
  }

  function frame() {
    if (!running) return;
    const t = master.currentTime;
    if (loop.on && t >= loop.b) seekAll(loop.a);
    else if (master.ended) { pause(); seekAll(0); return; }
    else {
      // Elements drift apart a little (each buffers on its own): pull any that is 60 ms off back to the clock.
      for (const { audio } of rows.slice(1)) {
        if (!audio.seeking && Math.abs(audio.currentTime - t) > 0.06) audio.currentTime = t;
      }
    }
    draw();
    requestAnimationFrame(frame);
  }

  function draw() {
    const d = duration(), t = master.currentTime;
    mixer.classList.toggle("is-running", running);
    start.setAttribute("aria-label", running ? "Stop mixer" : "Start mixer");
    time.textContent = clockText(t);
    if (!scrubbing) seek.value = String(d ? Math.round((t / d) * 1000) : 0);
    seek.setAttribute("aria-valuetext", `${clockText(t)} of ${clockText(d)}`);
  }

  // --- tempo, key, loop --------------------------------------------------------------------------------------------

  function applyTempo() {
    const rate = Number(tempo.value) / 100;
    for (const { audio } of rows) {
      audio.preservesPitch = true; // the default, said out loud: slower, not lower
      audio.playbackRate = rate;
    }
    tempoText.textContent = `${rate.toFixed(2)}×`;
    mixer.dataset.tempo = String(rate);
    updateLinks();
  }

  function applySemitones() {
    const n = Number(semitones.value);
    semitonesText.textContent = n > 0 ? `+${n}` : n < 0 ? `−${-n}` : "±0";
    keyNote.hidden = n === 0;
    updateLinks();
  }

  function setLoopPoint(which) {
    const t = master.currentTime;
    loop[which] = t;
    if (loop.a !== null && loop.b !== null && loop.b - loop.a < 0.5) loop[which === "a" ? "b" : "a"] = null;
    loop.on = loop.a !== null && loop.b !== null;
    showLoop();
  }

  function showLoop() {
    const ready = loop.a !== null && loop.b !== null;
    loopToggle.disabled = !ready;
    loopClear.disabled = loop.a === null && loop.b === null;
    loopToggle.setAttribute("aria-pressed", String(loop.on));
    const a = loop.a === null ? "–" : clockText(loop.a), b = loop.b === null ? "–" : clockText(loop.b);
    loopText.textContent = loop.a === null && loop.b === null ? "Set A and B to loop a passage" : `${a} → ${b}`;
    mixer.dataset.loop = loop.on ? `${loop.a.toFixed(2)}-${loop.b.toFixed(2)}` : "";
    const d = duration();
    loopBand.hidden = !ready || !d;
    if (ready && d) {
      loopBand.style.left = `${(loop.a / d) * 100}%`;
      loopBand.style.width = `${((loop.b - loop.a) / d) * 100}%`;
      loopBand.classList.toggle("is-on", loop.on);
    }
    updateLinks();
  }

  // --- the rendered mix -------------------------------------------------------------------------------------------

  function mixQuery() {
    const params = new URLSearchParams();
    for (const row of rows) params.set(`gain.${row.key}`, gainOf(row).toFixed(2));
    params.set("tempo", (Number(tempo.value) / 100).toFixed(2));
    params.set("semitones", semitones.value);
    if (loop.on) {
      params.set("start", loop.a.toFixed(2));
      params.set("end", loop.b.toFixed(2));
    }
    return params.toString();
  }

  function updateLinks() {
    const silent = rows.every((row) => gainOf(row) === 0);
    for (const link of downloads) {
      const base = mixer.dataset.mixUrl.replace("/mix.mp3?", `/mix.${link.dataset.mixDownload}?`);
      link.href = `${base}&${mixQuery()}`;
      link.classList.toggle("is-disabled", silent);
      link.setAttribute("aria-disabled", String(silent));
    }
    render.disabled = silent;
    if (loop.on) downloads[0].querySelector("span").textContent = "This loop · MP3";
    else downloads[0].querySelector("span").textContent = "This mix · MP3";
  }

  render.addEventListener("click", () => {
    pause();
    const began = performance.now();
    status.textContent = "Rendering…";
    preview.hidden = false;
    preview.src = `${mixer.dataset.mixUrl}&${mixQuery()}`;
    preview.play().catch(() => {}); // plays once the server has rendered it
    preview.addEventListener("playing", () => {
      status.textContent = `Rendered in ${((performance.now() - began) / 1000).toFixed(1)} s`;
    }, { once: true });
    preview.addEventListener("error", () => { status.textContent = "The mix could not be rendered."; }, { once: true });
  });
  preview.addEventListener("play", pause);

  // --- wiring (buttons and sliders only: everything works by touch) ----------------------------------------------

  start.addEventListener("click", () => (running ? pause() : play()));
  seek.addEventListener("input", () => { scrubbing = true; seekAll((Number(seek.value) / 1000) * duration()); });
  seek.addEventListener("change", () => { scrubbing = false; draw(); });
  for (const row of rows) {
    row.mute.addEventListener("click", () => { row.muted = !row.muted; applyGains(); });
    row.solo.addEventListener("click", () => { row.soloed = !row.soloed; applyGains(); });
    row.volume.addEventListener("input", applyGains);
  }
  tempo.addEventListener("input", applyTempo);
  semitones.addEventListener("input", applySemitones);
  for (const button of mixer.querySelectorAll("[data-loop-set]")) {
    button.addEventListener("click", () => setLoopPoint(button.dataset.loopSet));
  }
  loopToggle.addEventListener("click", () => { loop.on = !loop.on; showLoop(); });
  loopClear.addEventListener("click", () => { loop.a = loop.b = null; loop.on = false; showLoop(); });
  master.addEventListener("loadedmetadata", () => { draw(); showLoop(); });
  // The page's own players and the mixer never sound together.
  for (const audio of document.querySelectorAll("audio[data-track]")) audio.addEventListener("play", pause);

  applyGains();
  applyTempo();
  applySemitones();
  showLoop();
  draw();
})();
