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
    if (el && play(el)) e.preventDefault();
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
