// kino: play moments in the page, reindex from the library. No build step.
(function () {
  'use strict';

  function fmt(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var m = Math.floor(s / 60);
    s = s % 60;
    return m + ':' + (s < 10 ? '0' : '') + s;
  }

  // Plays video `id` from `startMs` in the page's <video> element.
  function play(el) {
    var player = document.getElementById('player');
    var video = document.getElementById('video');
    if (!player || !video) return false;
    var id = el.getAttribute('data-video');
    var startMs = Number(el.getAttribute('data-start')) || 0;
    var endMs = Number(el.getAttribute('data-end')) || startMs;
    var start = startMs / 1000;
    player.hidden = false;
    var label = document.getElementById('now-playing');
    if (label) label.textContent = (el.getAttribute('data-name') || ('video ' + id)) + ' · ' + fmt(startMs) + '–' + fmt(endMs);
    document.querySelectorAll('.playing').forEach(function (p) { p.classList.remove('playing'); });
    el.classList.add('playing');
    var seek = function () {
      video.currentTime = start;
      var p = video.play();
      if (p && p.catch) p.catch(function () { /* autoplay refused: the user presses play */ });
    };
    if (video.getAttribute('data-video') === id && video.readyState >= 1) {
      seek();
    } else {
      video.setAttribute('data-video', id);
      video.addEventListener('loadedmetadata', seek, { once: true });
      video.src = '/media/' + encodeURIComponent(id);
      video.load();
    }
    player.scrollIntoView({ block: 'nearest' });
    return true;
  }

  document.addEventListener('click', function (e) {
    var el = e.target.closest && e.target.closest('[data-video][data-start]');
    if (el && play(el)) {
      e.preventDefault();
      // Transcript lines: the address names the moment (shareable, survives reload).
      if (el.hasAttribute('data-permalink') && window.history && history.replaceState) {
        history.replaceState(null, '', el.getAttribute('href'));
      }
    }
  });

  // Video page: open the player at ?t= and follow playback in the transcript.
  (function () {
    var video = document.getElementById('video');
    if (!video || !video.hasAttribute('data-start-at')) return;
    var startAt = Number(video.getAttribute('data-start-at')) || 0;
    var seekStart = function () { if (startAt > 0) video.currentTime = startAt / 1000; };
    if (video.readyState >= 1) seekStart(); else video.addEventListener('loadedmetadata', seekStart, { once: true });
    var lines = Array.prototype.slice.call(document.querySelectorAll('a.cue-line'));
    var current = null;
    video.addEventListener('timeupdate', function () {
      var ms = video.currentTime * 1000;
      var found = null;
      lines.forEach(function (l) {
        if (Number(l.getAttribute('data-start')) <= ms && ms < Number(l.getAttribute('data-end'))) found = found || l;
      });
      if (found === current) return;
      if (current) current.classList.remove('current');
      if (found) found.classList.add('current');
      current = found;
    });
  })();

  // Video page: the speech-language form.
  document.querySelectorAll('form[data-video-language]').forEach(function (form) {
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var id = form.getAttribute('data-video-language');
      var input = form.querySelector('input[name="language"]');
      var status = document.getElementById('language-status');
      var value = input.value.trim();
      var button = form.querySelector('button');
      button.disabled = true;
      if (status) status.textContent = 'Saving…';
      fetch('/api/videos/' + encodeURIComponent(id) + '/language', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        credentials: 'same-origin',
        body: JSON.stringify({ language: value === '' ? null : value })
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, j: j }; });
      }).then(function (res) {
        if (!status) return;
        if (!res.ok) {
          status.textContent = 'Not saved: ' + (res.j.error || 'unknown error');
          return;
        }
        var lang = res.j.language ? 'set to ' + res.j.language : 'detected';
        var now = document.getElementById('language-now');
        if (now) now.textContent = res.j.language ? 'Speech is recognised as ' + res.j.language + '.' : 'The speech language is detected.';
        status.textContent = 'Speech language ' + lang + (res.j.job ? '; reindex queued (job ' + res.j.job.id + ').' : '.');
      }).catch(function (err) {
        if (status) status.textContent = 'Not saved: ' + err;
      }).finally(function () { button.disabled = false; });
    });
  });

  // Search results: mark a moment right or wrong for the query (kino train learns from the marks).
  document.querySelectorAll('.marks[data-segment]').forEach(function (box) {
    box.querySelectorAll('button[data-mark]').forEach(function (b) {
      b.addEventListener('click', function () {
        var right = b.getAttribute('data-mark') === 'right';
        var status = box.querySelector('.mark-status');
        box.querySelectorAll('button').forEach(function (x) { x.disabled = true; });
        fetch('/api/feedback', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          credentials: 'same-origin',
          body: JSON.stringify({
            query: box.getAttribute('data-query'),
            segment_id: Number(box.getAttribute('data-segment')),
            right: right
          })
        }).then(function (r) {
          return r.json().then(function (j) { return { ok: r.ok, j: j }; });
        }).then(function (res) {
          if (!res.ok) throw new Error(res.j.error || 'unknown error');
          box.classList.add(right ? 'marked-right' : 'marked-wrong');
          if (status) status.textContent = right ? 'Marked right. Thanks!' : 'Marked wrong. Thanks!';
        }).catch(function (err) {
          if (status) status.textContent = 'Not saved: ' + err.message;
          box.querySelectorAll('button').forEach(function (x) { x.disabled = false; });
        });
      });
    });
  });

  function reindex(body, button) {
    var status = document.getElementById('reindex-status');
    button.disabled = true;
    if (status) status.textContent = 'Reindexing…';
    fetch('/api/reindex', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, j: j }; });
    }).then(function (res) {
      if (status) status.textContent = res.ok ? 'Reindex requested: ' + JSON.stringify(res.j) : 'Reindex failed: ' + (res.j.error || 'unknown error');
    }).catch(function (err) {
      if (status) status.textContent = 'Reindex failed: ' + err;
    }).finally(function () { button.disabled = false; });
  }

  document.querySelectorAll('[data-reindex]').forEach(function (b) {
    b.addEventListener('click', function () { reindex({ video: Number(b.getAttribute('data-reindex')) }, b); });
  });
  document.querySelectorAll('[data-reindex-stale]').forEach(function (b) {
    b.addEventListener('click', function () { reindex({ stale: true }, b); });
  });
})();
