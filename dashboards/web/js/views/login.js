// Token login form, shown when no token is stored or the gateway answers 401.

import { clearToken, getPatients, getUser, setToken, setUser } from "../api.js";
import { el } from "../util.js";

/** Show the form in `root`; resolves once a token the gateway accepts is stored. */
export function showLogin(root, message = "") {
  return new Promise((resolve) => {
    const token = el("input", {
      type: "password",
      name: "token",
      autocomplete: "current-password",
      required: true,
      value: "",
      placeholder: "API token",
    });
    const user = el("input", { type: "text", name: "user", autocomplete: "username", value: getUser() });
    const status = el("p", { class: `status-line ${message ? "error" : ""}`, role: "alert" }, message);
    const button = el("button", { type: "submit", class: "primary" }, "Sign in");
    const form = el(
      "form",
      {
        class: "card login",
        onsubmit: async (ev) => {
          ev.preventDefault();
          const t = token.value.trim();
          if (!t) return;
          button.disabled = true;
          status.className = "status-line busy";
          status.textContent = "Checking token…";
          setToken(t);
          setUser(user.value.trim() || "clinician");
          try {
            const patients = await getPatients();
            overlay.remove();
            resolve(patients);
          } catch (err) {
            if (err?.name === "AuthError") {
              clearToken();
              status.textContent = "The gateway rejected this token.";
            } else {
              // Gateway unreachable or erroring: keep the token, the app retries.
              overlay.remove();
              resolve(null);
              return;
            }
            status.className = "status-line error";
            button.disabled = false;
          }
        },
      },
      el("div", { class: "brand big" }, el("span", { class: "logo" }, "♥"), " ecgmon"),
      el("h1", {}, "Central station sign-in"),
      el("label", {}, el("span", {}, "Access token"), token),
      el("label", {}, el("span", {}, "Your name (recorded on acknowledgements)"), user),
      el("div", { class: "form-actions" }, button),
      status,
    );
    const overlay = el("div", { class: "login-overlay" }, form);
    root.append(overlay);
    token.focus();
  });
}
