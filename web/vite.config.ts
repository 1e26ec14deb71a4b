/// <reference types="vitest/config" />
import { copyFileSync, mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath, URL } from 'node:url'
import { defineConfig, type Plugin } from 'vite'
import vue from '@vitejs/plugin-vue'

/** The API docs at /schema (RapiDoc) load their script from the server, not from a CDN. */
function apiDocsAssets(): Plugin {
  let outDir = ''
  return {
    name: 'chronicle-api-docs',
    apply: 'build',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir)
    },
    closeBundle() {
      mkdirSync(resolve(outDir, 'api-docs'), { recursive: true })
      copyFileSync(
        fileURLToPath(new URL('./node_modules/rapidoc/dist/rapidoc-min.js', import.meta.url)),
        resolve(outDir, 'api-docs', 'rapidoc-min.js'),
      )
    },
  }
}

const backend = process.env.CHRONICLE_DEV_BACKEND ?? 'http://127.0.0.1:8765'

export default defineConfig({
  plugins: [vue(), apiDocsAssets()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  define: {
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  server: {
    proxy: {
      '/api': { target: backend, ws: true, changeOrigin: false },
      '/health': { target: backend, changeOrigin: false },
    },
  },
  // `npm run preview` serves the build under the production Content-Security-Policy.
  preview: {
    headers: {
      'content-security-policy':
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:",
    },
  },
  build: {
    outDir: '../infrastructure/web/client',
    emptyOutDir: true,
    sourcemap: false,
    // No inline module-preload polyfill script: the CSP allows 'self' scripts only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
  },
})
