// The login page: posts { token } or { user, password } as JSON, then goes to where the person was headed.
const form = document.getElementById('login');
const error = document.getElementById('error');
const params = new URLSearchParams(location.search);
if (params.get('error')) error.textContent = params.get('error');
const next = params.get('next');
// only paths on this server (never //other.host or a full URL)
const target = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const user = form.user.value.trim();
  const secret = form.secret.value;
  const body = user ? { user, password: secret } : { token: secret };
  error.textContent = '';
  try {
    const res = await fetch('/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    // the view (#/...) never reaches the server: it came along on the redirect to this page
    if (res.ok) return location.assign(target.includes('#') ? target : target + location.hash);
    const msg = await res.json().catch(() => null);
    error.textContent = msg?.error?.message ?? `sign-in failed (${res.status})`;
  } catch (err) {
    error.textContent = `cannot reach the server: ${err.message}`;
  }
});
