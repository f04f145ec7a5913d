/* The participant page of the phosphene-readability experiment (jsPsych 8).
 *
 * Consent -> instructions with an example -> screen calibration (the
 * credit-card "virtual chinrest": px/deg) -> then, trial by trial, whatever
 * the server hands out (GET /api/participants/{id}/next): practice with
 * feedback, the counterbalanced choice and click blocks, catch trials and
 * breaks -> the end page, shown only once the server says every response is
 * stored. Every post is retried with backoff, and the page says so. The
 * participant's id and token live in localStorage: a reload or a dropped
 * connection resumes at the next unanswered trial.
 */
(function () {
  "use strict";

  const params = new URLSearchParams(window.location.search);
  const PANEL = {
    prolific_pid: params.get("PROLIFIC_PID"),
    study_id: params.get("STUDY_ID"),
    session_id: params.get("SESSION_ID"),
  };
  const KEY = "triplet_pose_experiment:" + (PANEL.prolific_pid || "") + ":" + (PANEL.study_id || "");
  if (params.has("new")) localStorage.removeItem(KEY);  // a lab machine: next person
  let state = JSON.parse(localStorage.getItem(KEY) || "{}");
  const save = () => localStorage.setItem(KEY, JSON.stringify(state));
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];  // then every 8 s, for ever

  let settings = null;   // /experiment.json
  let current = null;    // the trial the server handed out (or {done: true, ...})
  let result = null;     // the answer to post: {choice} or {clicks}, and rt_ms
  let feedback = null;   // practice feedback from the server's answer
  let lastPractice = false;

  function showStatus(text) {
    const el = document.getElementById("status");
    el.textContent = text || "";
    el.hidden = !text;
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const escape = (s) => String(s).replace(/[&<>"']/g, (c) => (
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  /* fetch with retries: network errors, 5xx and 429 are retried with backoff
   * (shown on screen); any other answer is returned as {status, data}. */
  async function api(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      let problem;
      try {
        const headers = {"Accept": "application/json"};
        if (body !== undefined) headers["Content-Type"] = "application/json";
        if (state.token) headers["Authorization"] = "Bearer " + state.token;
        const r = await fetch(path, {method, headers, cache: "no-store",
                                     body: body === undefined ? undefined : JSON.stringify(body)});
        if (r.status < 500 && r.status !== 429) {
          const data = await r.json().catch(() => ({}));
          if (attempt > 0) showStatus("");
          return {status: r.status, data};
        }
        problem = "the server answered " + r.status;
      } catch (e) {
        problem = "no connection to the server";
      }
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      showStatus("Could not reach the server (" + problem + "). Retrying in " +
                 Math.ceil(wait / 1000) + " s (attempt " + (attempt + 1) + "). " +
                 "Please keep this page open: your answers are kept.");
      await sleep(wait * (0.8 + 0.4 * Math.random()));
    }
  }

  function fail(message) {
    showStatus("Error: " + message);
    throw new Error(message);
  }

  function preload(urls) {
    return Promise.all(urls.map((url) => new Promise((resolve) => {
      const img = new Image();
      img.onload = img.onerror = () => resolve();
      img.src = url;
    })));
  }

  function displaySize() {
    // The phosphene image spans the simulated field of view at the measured
    // px/deg, kept inside the window.
    const wanted = settings.view_angle_deg * (state.px_per_deg || 30);
    const room = Math.min(window.innerWidth - 40, window.innerHeight - 320);
    return Math.round(Math.max(160, Math.min(wanted, room)));
  }

  async function register() {
    const body = {};
    for (const [k, v] of Object.entries(PANEL)) if (v) body[k] = v;
    const r = await api("POST", "/api/participants", body);
    if (r.status !== 201) fail(r.data.error || "could not start (" + r.status + ")");
    state = {participant_id: r.data.participant_id, token: r.data.token, consented: true};
    save();
  }

  async function loadNext() {
    const r = await api("GET", "/api/participants/" + state.participant_id + "/next");
    if (r.status === 404 || r.status === 403) {  // the study was reset: start again
      localStorage.removeItem(KEY);
      window.location.reload();
      await sleep(60000);
    }
    if (r.status !== 200) fail(r.data.error || "could not load the next trial");
    current = r.data;
    if (!current.done) await preload([current.stimulus_url, ...current.choices]);
  }

  async function postResult() {
    const body = {trial_index: current.trial_index, rt_ms: Math.max(1, Math.round(result.rt_ms))};
    if (result.choice !== undefined) body.choice = result.choice;
    if (result.clicks !== undefined) body.clicks = result.clicks;
    if (state.px_per_deg >= 1 && state.px_per_deg <= 1000) body.px_per_deg = state.px_per_deg;
    const r = await api("POST", "/api/participants/" + state.participant_id + "/responses", body);
    // 409 "already has a different answer": the server keeps the first one.
    if (r.status !== 201 && r.status !== 200 && r.status !== 409) {
      fail(r.data.error || "the answer was refused (" + r.status + ")");
    }
    feedback = current.practice && r.status !== 409 ? r.data : null;
  }

  /* A click trial: the participant clicks each target on the image in turn. */
  class ClickPlugin {
    constructor(jsPsych) { this.jsPsych = jsPsych; }
    trial(display_element, trial) {
      const size = trial.size;
      display_element.innerHTML =
        '<p id="click-prompt"></p>' +
        '<div class="click-area" id="click-area"><img id="click-image" alt="phosphene image" ' +
        'draggable="false" src="' + escape(trial.stimulus) + '" width="' + size + '" height="' +
        size + '"></div><p><button class="jspsych-btn" id="click-undo" disabled>Undo last click' +
        '</button></p>' + (trial.prompt || "");
      const area = display_element.querySelector("#click-area");
      const image = display_element.querySelector("#click-image");
      const prompt = display_element.querySelector("#click-prompt");
      const undo = display_element.querySelector("#click-undo");
      const clicks = [];
      const markers = [];
      const start = performance.now();
      const ask = () => {
        prompt.innerHTML = "Click the <b>" + escape(trial.targets[clicks.length]) + "</b> (" +
          (clicks.length + 1) + " of " + trial.targets.length + ")";
        undo.disabled = clicks.length === 0;
      };
      area.addEventListener("click", (e) => {
        const box = image.getBoundingClientRect();
        const x = e.clientX - box.left, y = e.clientY - box.top;
        if (x < 0 || y < 0 || x >= box.width || y >= box.height) return;
        const natural = image.naturalWidth || trial.natural_size;
        const scale = natural / box.width;
        clicks.push([Math.min(natural - 0.01, x * scale), Math.min(natural - 0.01, y * scale)]);
        const marker = document.createElement("div");
        marker.className = "click-marker";
        marker.style.left = x + "px";
        marker.style.top = y + "px";
        marker.innerHTML = "<span>" + escape(trial.targets[clicks.length - 1]) + "</span>";
        area.appendChild(marker);
        markers.push(marker);
        if (clicks.length === trial.targets.length) {
          this.jsPsych.finishTrial({clicks, rt: performance.now() - start});
        } else {
          ask();
        }
      });
      undo.addEventListener("click", () => {
        clicks.pop();
        markers.pop().remove();
        ask();
      });
      ask();
    }
  }
  ClickPlugin.info = {
    name: "phosphene-click",
    version: "1.0.0",
    parameters: {
      stimulus: {type: jsPsychModule.ParameterType.IMAGE},
      size: {type: jsPsychModule.ParameterType.INT},
      natural_size: {type: jsPsychModule.ParameterType.INT, default: 256},
      targets: {type: jsPsychModule.ParameterType.STRING, array: true},
      prompt: {type: jsPsychModule.ParameterType.HTML_STRING, default: ""},
    },
    data: {
      clicks: {type: jsPsychModule.ParameterType.COMPLEX},
      rt: {type: jsPsychModule.ParameterType.FLOAT},
    },
  };

  const CONSENT = () => `
    <div class="consent"><h2>${escape(settings.title)}</h2>
    <p>This study asks how well people can recognise body poses in images like those a
    visual prosthesis (a brain implant for blind people) might produce. You will see
    patterns of light dots and answer what pose they show. It takes about 15 minutes.</p>
    <p>We store your answers, your response times, your screen calibration and, if you
    came from an online panel, its participant, study and session ids. We store nothing
    else about you. Your participation is voluntary; you may stop at any time by closing
    this page.</p><p>Do you agree to take part?</p></div>`;

  const INSTRUCTIONS = () => {
    const ex = settings.example;
    const pictures = ex ? `<div class="example-row">
        <figure><img src="${escape(ex.figure)}" alt="a person"><figcaption>A person</figcaption></figure>
        <figure class="stimulus-frame"><img src="${escape(ex.phosphenes)}" alt="their phosphenes">
        </figure><figcaption>&larr; what the implant might show of them</figcaption></div>` : "";
    return `<div class="consent"><h2>What you will do</h2>${pictures}
      <p><b>Choice trials:</b> you see a pattern of light dots. Below it are 4 stick figures.
      Click the stick figure whose pose the dots show. A few trials show an ordinary picture.</p>
      <p><b>Click trials:</b> you click where the person's head, right hand, left hand, right
      foot and left foot are (if you cannot tell right from left, guess).</p>
      <p>First we measure your screen, so that the images have the same size for everyone.
      Then a few practice trials show you whether you were right. Answer as accurately and
      as quickly as you can; guess when unsure.</p></div>`;
  };

  const BLOCK_INTRO = {
    choice: "<p><b>Choice trials.</b> Click the stick figure whose pose the dots show.</p>",
    click: "<p><b>Click trials.</b> Click the head, right hand, left hand, right foot and left " +
           "foot, in that order. Use <i>Undo</i> to correct a click.</p>",
  };

  function buildTimeline(jsPsych) {
    const alive = () => current && !current.done;
    const timeline = [];
    if (!state.participant_id) {
      timeline.push({
        type: jsPsychHtmlButtonResponse,
        stimulus: CONSENT,
        choices: ["I agree", "I do not agree"],
        on_finish: (data) => {
          if (data.response !== 0) {
            jsPsych.abortExperiment("<p>Thank you. You chose not to take part; you may close " +
                                    "this page.</p>");
          }
        },
      });
      timeline.push({type: jsPsychCallFunction, async: true,
                     func: (done) => { register().then(() => done()); }});
    }
    if (!state.instructed) {
      timeline.push({type: jsPsychHtmlButtonResponse, stimulus: INSTRUCTIONS,
                     choices: ["Start the calibration"],
                     on_finish: () => { state.instructed = true; save(); }});
    }
    if (!state.px_per_deg) {
      timeline.push({
        type: jsPsychVirtualChinrest,
        blindspot_reps: settings.blindspot_reps || 3,
        resize_units: "none",
        on_finish: (data) => {
          state.px_per_deg = Math.round(data.px2deg * 1000) / 1000;
          state.view_dist_mm = data.view_dist_mm;
          save();
        },
      });
    }
    const loop = [
      {type: jsPsychCallFunction, async: true, func: (done) => { loadNext().then(() => done()); }},
      {timeline: [{type: jsPsychHtmlButtonResponse, choices: ["Continue"],
                   stimulus: "<p>Time for a short break. Continue when you are ready.</p>"}],
       conditional_function: () => alive() && current.break_before},
      {timeline: [{type: jsPsychHtmlButtonResponse, choices: ["Start"],
                   stimulus: () => (current.practice ? "<p>First, some practice trials with " +
                     "feedback.</p>" : "") + BLOCK_INTRO[current.block]}],
       conditional_function: () => alive() && current.block_start},
      {timeline: [{type: jsPsychHtmlButtonResponse, choices: ["Start"],
                   stimulus: "<p>Practice is over. From now on there is no feedback.</p>"}],
       conditional_function: () => alive() && lastPractice && !current.practice &&
                                   !current.block_start},
      {timeline: [{
        type: jsPsychImageButtonResponse,
        stimulus: () => current.stimulus_url,
        stimulus_width: () => displaySize(),
        render_on_canvas: false,
        choices: () => current.choices,
        button_layout: "flex",
        button_html: (choice, i) => `<button class="jspsych-btn candidate" aria-label="pose ${i + 1}">` +
          `<img src="${escape(choice)}" width="${settings.candidate_size}" ` +
          `height="${settings.candidate_size}" alt="pose ${i + 1}"></button>`,
        prompt: () => `<p>Which pose is shown? <span class="progress">(${current.progress[0] + 1}` +
                      ` of ${current.progress[1]})</span></p>`,
        on_finish: (data) => { result = {choice: data.response, rt_ms: data.rt}; },
      }], conditional_function: () => alive() && current.task === "choice"},
      {timeline: [{
        type: ClickPlugin,
        stimulus: () => current.stimulus_url,
        size: () => displaySize(),
        natural_size: () => current.image_size,
        targets: () => current.targets,
        prompt: () => `<p class="progress">(${current.progress[0] + 1} of ${current.progress[1]})</p>`,
        on_finish: (data) => { result = {clicks: data.clicks, rt_ms: data.rt}; },
      }], conditional_function: () => alive() && current.task === "click"},
      {timeline: [{type: jsPsychCallFunction, async: true,
                   func: (done) => { postResult().then(() => done()); }}],
       conditional_function: alive},
      {timeline: [{type: jsPsychHtmlButtonResponse, choices: ["Continue"],
                   stimulus: () => feedbackHtml()}],
       conditional_function: () => alive() && feedback !== null},
      {type: jsPsychCallFunction, func: () => { if (alive()) lastPractice = current.practice; }},
    ];
    timeline.push({timeline: loop, loop_function: () => !(current && current.done)});
    timeline.push({
      type: jsPsychHtmlButtonResponse,
      choices: [],
      stimulus: () => endHtml(),
      on_load: () => {
        state.done = true;
        save();
        if (current.redirect_url) {
          setTimeout(() => window.location.assign(current.redirect_url), 3000);
        }
      },
    });
    return timeline;
  }

  function feedbackHtml() {
    if (feedback.correct !== undefined) {
      return feedback.correct ? "<p><b>Correct.</b></p>" :
        `<p><b>Not quite.</b> The pose shown was this one:</p><img src="${escape(
          current.choices[feedback.answer])}" width="${settings.candidate_size}" alt="answer">`;
    }
    const size = displaySize(), scale = size / current.image_size;
    const marks = (feedback.answer_points || []).map((p, k) =>
      `<div class="click-marker answer-marker" style="left:${p[0] * scale}px;top:${p[1] * scale}px">` +
      `<span>${escape(current.targets[k])}</span></div>`).join("");
    return `<p>The right places were:</p><div class="click-area"><img src="${escape(
      current.stimulus_url)}" width="${size}" height="${size}" alt="answer">${marks}</div>`;
  }

  function endHtml() {
    const code = escape(current.completion_code);
    return `<h2>Thank you!</h2><p>All your answers are saved.</p>
      <p>Your completion code: <b id="completion-code">${code}</b></p>` +
      (current.redirect_url ? "<p>You will be sent back to the study panel in a moment.</p>" :
                              "<p>You may close this page.</p>");
  }

  async function main() {
    const r = await api("GET", "/experiment.json");
    if (r.status !== 200) fail("could not load the study settings");
    settings = r.data;
    document.title = settings.title;
    const jsPsych = initJsPsych({display_element: "experiment"});
    // jsPsych listens for keys on its container. A clicked button that the
    // next screen removes leaves the focus on <body>, where the calibration's
    // space presses would go unheard: give the focus back to the container.
    document.addEventListener("click", () => setTimeout(() => {
      if (!document.activeElement || document.activeElement === document.body) {
        jsPsych.getDisplayContainerElement().focus({preventScroll: true});
      }
    }, 0));
    jsPsych.run(buildTimeline(jsPsych));
  }

  main();
})();
