import { defineConfig, devices } from '@playwright/test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// The suite starts the real server (built by `cargo leptos build`, see scripts/test.sh) on its own
// port with a throwaway data folder and the fixture models, and drives Debian's Chromium.
const root = resolve(__dirname, '..');
const port = Number(process.env.E2E_PORT ?? 3107);
// A second server in mock mode, paced so a reply streams for seconds: Stop, the thinking block
// and progress bars can be watched there. Specs reach it through `mockURL` in tests/helpers.ts.
const mockPort = port + 1;
const dataDir = mkdtempSync(join(tmpdir(), 'duet-e2e-'));
const mockDataDir = mkdtempSync(join(tmpdir(), 'duet-e2e-mock-'));
// A third with no models at all, for the error states (accounts off, so no log-in is needed).
const brokenPort = port + 2;
const brokenDataDir = mkdtempSync(join(tmpdir(), 'duet-e2e-broken-'));
process.env.E2E_BROKEN_URL = `http://127.0.0.1:${brokenPort}`;
// A fourth downloading its chat model from a stand-in hub (mock-hub.mjs) that stalls mid-file, so
// the download's progress stays on screen; its image model is a repository the hub does not have.
const hubPort = port + 3;
const downloadPort = port + 4;
const downloadDataDir = mkdtempSync(join(tmpdir(), 'duet-e2e-download-'));
process.env.E2E_DOWNLOAD_URL = `http://127.0.0.1:${downloadPort}`;
const serverBin = process.env.SERVER_BIN ?? join(root, 'target/debug/server');
process.env.E2E_MOCK_URL = `http://127.0.0.1:${mockPort}`;
// A sixth in mock mode whose first account (made by admin.spec.ts) is its admin.
const adminPort = port + 5;
const adminDataDir = mkdtempSync(join(tmpdir(), 'duet-e2e-admin-'));
process.env.E2E_ADMIN_URL = `http://127.0.0.1:${adminPort}`;
const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: chromium,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
  },
  projects: [
    { name: 'desktop', use: { ...devices['Desktop Chrome'], viewport: { width: 1280, height: 800 } } },
    { name: 'phone', use: { ...devices['Pixel 7'], viewport: { width: 375, height: 740 } } },
  ],
  webServer: [
    {
      command: serverBin,
      cwd: root,
      url: `http://127.0.0.1:${port}/health`,
      reuseExistingServer: false,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
        LEPTOS_SITE_ROOT: join(root, 'target/site'),
        DATA_DIR: dataDir,
        LLM_MODEL: join(root, 'fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov'),
        SD_MODEL: join(root, 'fixtures/sd/tiny-stable-diffusion-v1-5-int8-ov'),
        USE_MOCKS: 'false',
        RUST_LOG: 'info',
      },
    },
    {
      command: serverBin,
      cwd: root,
      url: `http://127.0.0.1:${mockPort}/health`,
      reuseExistingServer: false,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${mockPort}`,
        LEPTOS_SITE_ROOT: join(root, 'target/site'),
        DATA_DIR: mockDataDir,
        USE_MOCKS: 'true',
        MOCK_TOKEN_MS: '60',
        MOCK_IMAGE_STEP_MS: '150',
        RUST_LOG: 'info',
      },
    },
    {
      command: serverBin,
      cwd: root,
      url: `http://127.0.0.1:${adminPort}/health`,
      reuseExistingServer: false,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${adminPort}`,
        LEPTOS_SITE_ROOT: join(root, 'target/site'),
        DATA_DIR: adminDataDir,
        USE_MOCKS: 'true',
        RUST_LOG: 'warn',
      },
    },
    {
      command: serverBin,
      cwd: root,
      url: `http://127.0.0.1:${brokenPort}/health`,
      reuseExistingServer: false,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${brokenPort}`,
        LEPTOS_SITE_ROOT: join(root, 'target/site'),
        DATA_DIR: brokenDataDir,
        LLM_MODEL: 'duet-e2e/no-such-llm',
        SD_MODEL: 'duet-e2e/no-such-sd',
        USE_MOCKS: 'false',
        AUTO_DOWNLOAD_MODELS: 'false',
        AUTH_REQUIRED: 'false',
        RUST_LOG: 'warn',
      },
    },
    {
      command: `node mock-hub.mjs ${hubPort} ${join(root, 'fixtures/llm/tiny-deepseek-r1-distill-qwen-int4-cw-ov')}`,
      cwd: __dirname,
      url: `http://127.0.0.1:${hubPort}/health`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: serverBin,
      cwd: root,
      url: `http://127.0.0.1:${downloadPort}/health`,
      reuseExistingServer: false,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
      env: {
        LEPTOS_SITE_ADDR: `127.0.0.1:${downloadPort}`,
        LEPTOS_SITE_ROOT: join(root, 'target/site'),
        DATA_DIR: downloadDataDir,
        LLM_MODEL: 'duet-e2e/tiny-llm',
        SD_MODEL: 'duet-e2e/no-such-sd',
        HF_ENDPOINT: `http://127.0.0.1:${hubPort}`,
        AUTO_DOWNLOAD_MODELS: 'true',
        USE_MOCKS: 'false',
        AUTH_REQUIRED: 'false',
        RUST_LOG: 'warn',
      },
    },
  ],
});
