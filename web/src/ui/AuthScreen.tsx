import { useState, type FormEvent } from 'react';
import * as api from '../lib/api';
import { signIn } from '../lib/engine';
import { followLocation } from './router';

type Mode = 'login' | 'register';

export function AuthScreen() {
  const [mode, setMode] = useState<Mode>('login');
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    if (mode === 'register' && password.length < 8) {
      setError('Choose a password of at least 8 characters.');
      return;
    }
    setBusy(true);
    try {
      const auth = mode === 'login' ? await api.login(email, password) : await api.register(name, email, password);
      await signIn({ token: auth.accessToken, user: auth.user });
      followLocation();
    } catch (err) {
      setError(err instanceof api.ApiError ? err.message : 'Something went wrong. Please try again.');
      setBusy(false);
    }
  }

  function switchTo(next: Mode) {
    setMode(next);
    setError(null);
  }

  const register = mode === 'register';
  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} noValidate={false}>
        <h1>
          <img src="/icon.svg" alt="" width={32} height={32} /> Nexus
        </h1>
        <h2>{register ? 'Create your account' : 'Welcome back'}</h2>
        {register && (
          <label>
            Name
            <input name="name" autoComplete="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
          </label>
        )}
        <label>
          Email
          <input
            name="email"
            type="email"
            autoComplete="email"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={register ? 'new-password' : 'current-password'}
            required
            minLength={register ? 8 : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {register ? 'Create account' : 'Log in'}
        </button>
        <p className="switch">
          {register ? 'Already registered?' : 'New here?'}{' '}
          <button type="button" className="link" onClick={() => switchTo(register ? 'login' : 'register')}>
            {register ? 'I have an account' : 'Create an account'}
          </button>
        </p>
      </form>
    </main>
  );
}
