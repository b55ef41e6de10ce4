/* voicebot sign-in, shared by the agent desktop, the supervisor console, the wallboard and
 * reports: one copy of the session check (GET /api/me), the login form (POST /api/login),
 * its messages, the role check and sign-out (POST /api/logout).  Plain browser JavaScript
 * loaded before the page's own script; it defines the one global `VoicebotSignIn`.
 *
 * The page's HTML carries the form: #login-view holding #login-form, #login-user,
 * #login-password, #login-error and #login-submit, and beside it the signed-in view
 * #<view>-view.  The page calls start() once and is told when to run and when to stop:
 *
 *   VoicebotSignIn.start({
 *     view: "board",                     // #board-view; body[data-view] is "board" or "login"
 *     roles: ["supervisor", "admin"],    // optional; the server checks again in any case
 *     refused: (me) => `${me.name || me.id} may not ...`,  // the form's message for others
 *     onSubmit() {},                     // optional: runs inside the user's click
 *     onSignedIn(me) {},                 // {id, name, role}: the view is showing, start work
 *     onSignedOut() {},                  // optional: the form is showing, stop work
 *   });
 *
 * showLogin(message) brings the form back (a session that ended, a refused socket), and
 * signOut() ends the session. */
window.VoicebotSignIn = (() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  let page = null;

  /* "5:00" for a Retry-After of 300 s: a lockout is minutes, never a bare count of seconds. */
  function waitText(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function failure(response) {
    if (response.status === 401) return "Wrong user name or password.";
    if (response.status === 429) {
      const wait = Number(response.headers.get("Retry-After"));
      return wait > 0 ? `Too many attempts. Try again in ${waitText(wait)}.` : "Too many attempts. Wait a moment and try again.";
    }
    return `Sign-in failed (server answered ${response.status}).`;
  }

  function allows(principal) {
    return !page.roles || Boolean(principal && page.roles.includes(principal.role));
  }

  function stop() {
    if (page.onSignedOut) page.onSignedOut();
  }

  function showForm(message) {
    document.body.dataset.view = "login";
    $(`${page.view}-view`).hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message;
    $("login-error").hidden = !message;
    $("login-submit").disabled = false;
    $("login-user").focus();
  }

  /* The form with a message ("" for none), after the page has stopped its work. */
  function showLogin(message) {
    stop();
    showForm(message);
  }

  function formError(message) {
    $("login-error").textContent = message;
    $("login-error").hidden = false;
    $("login-submit").disabled = false;
    $("login-password").focus();
  }

  function signedIn(principal) {
    if (!allows(principal)) return showLogin(page.refused(principal));
    document.body.dataset.view = page.view;
    $("login-view").hidden = true;
    $(`${page.view}-view`).hidden = false;
    page.onSignedIn(principal);
  }

  async function submit(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    if (!user || !password) return formError("Enter your user name and password.");
    $("login-submit").disabled = true;
    if (page.onSubmit) page.onSubmit();
    let response;
    try {
      response = await fetch("/api/login", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user, password }),
      });
    } catch (err) {
      return formError("Cannot reach the server. Check the network and try again.");
    }
    if (!response.ok) return formError(failure(response));
    $("login-password").value = "";
    signedIn(await response.json());
  }

  async function checkSession() {
    try {
      const response = await fetch("/api/me", { credentials: "same-origin" });
      if (response.ok) return signedIn(await response.json());
    } catch (err) {
      return showLogin("Cannot reach the server. Check the network and reload the page.");
    }
    showLogin("");
  }

  function start(options) {
    page = options;
    $("login-form").addEventListener("submit", submit);
    checkSession();
  }

  async function signOut() {
    stop();
    try {
      await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
    } catch (err) { /* the cookie expires on its own */ }
    showForm("");
  }

  return { start, showLogin, signOut, allows };
})();
