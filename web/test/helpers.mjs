// Test helpers: a built perund binary running `perund dev` on a free
// loopback port, stopped at the end of the test.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let built;
/** Builds perund once per test process (or uses TEST_PERUND_BIN). */
export function perundBin() {
  if (process.env.TEST_PERUND_BIN) return process.env.TEST_PERUND_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), 'perund-js-'));
    built = join(dir, 'perund');
    execFileSync('go', ['build', '-o', built, './cmd/perund'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  return built;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * Starts `perund dev` on 127.0.0.1 with its own data dir.
 * @param {string[]} [extra] more arguments
 * @returns {Promise<{url: string, rpc: string, port: number, dataDir: string, output: () => string, stop: () => Promise<number|null>, kill: () => Promise<void>}>}
 */
export async function startDev(extra = [], dataDir = mkdtempSync(join(tmpdir(), 'perund-js-data-')), port) {
  port ??= await freePort();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PERUND_')));
  const proc = spawn(perundBin(), ['dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...extra], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (i > 600 || proc.exitCode !== null) throw new Error(`perund dev did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, port, dataDir, rpc: `ws://127.0.0.1:${port}/rpc`,
    output: () => out,
    /** SIGTERM; resolves to the exit code. */
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const code = await exited;
      return code;
    },
    async kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
    cleanup() { rmSync(dataDir, { recursive: true, force: true }); },
  };
}
