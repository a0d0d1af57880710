/// <reference types="vitest/config" />
// Vite builds the client into dist/ (embedded in the nexus binary by crates/web).
// Two extra steps, as small plugins: the service worker (src/sw.ts) is built as /sw.js with
// the list of files to precache, and every text file gets a .gz twin that the server sends
// to clients accepting gzip. See docs/web.md.
import { gzipSync } from 'node:zlib';
import { readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

const server = process.env.NEXUS_DEV_SERVER ?? 'http://127.0.0.1:3000';
const apiPrefixes = ['/auth', '/users', '/messages', '/sync', '/conversations', '/health', '/ready'];

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** Fills the service worker's precache list with the files of this build. */
function precacheManifest(): Plugin {
  return {
    name: 'nexus-precache-manifest',
    apply: 'build',
    generateBundle(_options, bundle) {
      const sw = bundle['sw.js'];
      if (!sw || sw.type !== 'chunk') return;
      const files = Object.keys(bundle)
        .filter((f) => f !== 'sw.js' && !f.endsWith('.map'))
        .map((f) => '/' + f);
      const publicFiles = readdirSync('public').map((f) => '/' + f);
      // index.html by its own name: the server gives "/" as HTML only to a navigation.
      const shell = [...new Set(['/index.html', ...files, ...publicFiles])];
      const version = shell.join(',').length.toString(36) + '-' + Date.now().toString(36);
      const list = JSON.stringify(shell).slice(1, -1);
      sw.code = sw.code.replace(/["'`]__NEXUS_PRECACHE__["'`]/g, list).replace(/__NEXUS_VERSION__/g, version);
    },
  };
}

/** Writes name.gz beside every compressible file of dist/. */
function gzipTwins(): Plugin {
  let outDir = 'dist';
  return {
    name: 'nexus-gzip-twins',
    apply: 'build',
    configResolved(config) {
      outDir = config.build.outDir;
    },
    closeBundle() {
      for (const file of walk(outDir)) {
        if (!/\.(js|css|html|svg|json|webmanifest|txt)$/.test(file)) continue;
        const raw = readFileSync(file);
        if (raw.length < 1024) continue;
        const gz = gzipSync(raw, { level: 9 });
        if (gz.length < raw.length * 0.9) writeFileSync(file + '.gz', gz);
      }
    },
  };
}

// The brief's Firebase web SDK only when its variables are set (then `npm install firebase`).
const firebase = !!process.env.VITE_FIREBASE_API_KEY;

export default defineConfig({
  plugins: [react(), precacheManifest(), gzipTwins()],
  resolve: {
    alias: { 'nexus:fcm': new URL(`./src/lib/fcm/${firebase ? 'firebase' : 'off'}.ts`, import.meta.url).pathname },
  },
  build: {
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: true,
    rolldownOptions: {
      input: { index: 'index.html', sw: 'src/sw.ts' },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  server: {
    proxy: {
      ...Object.fromEntries(apiPrefixes.map((p) => [p, server])),
      '/socket.io': { target: server, ws: true },
    },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
});
