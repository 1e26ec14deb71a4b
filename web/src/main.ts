import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { createAppRouter } from './router'
import { setUnauthorizedHandler } from './api/client'
import { useAccountStore } from './features/account/accountStore'
import './styles/app.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
const router = createAppRouter()
app.use(router)

setUnauthorizedHandler(() => {
  const account = useAccountStore(pinia)
  account.expired()
})

app.mount('#app')
