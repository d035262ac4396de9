import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The backend serves dist/ at "/", so assets are absolute from the root.
export default defineConfig({
  base: '/',
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      output: {
        // Element Plus is large and changes rarely: its own chunk caches across console releases.
        manualChunks: { 'element-plus': ['element-plus'], vue: ['vue', 'vue-router', 'vue-i18n', 'pinia'] },
      },
    },
  },
  server: {
    port: 5173,
    proxy: {
      // ws: true forwards the live/playback WebSockets under /api as well.
      '/api': { target: 'http://127.0.0.1:8080', changeOrigin: false, ws: true },
    },
  },
})
