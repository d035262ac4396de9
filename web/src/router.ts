/** Routes; `meta.nav` puts a page in the header, `meta.admin`/`meta.operator` restrict it by role. */
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { setUnauthorizedHandler } from './api/client'
import ConsoleLayout from './components/ConsoleLayout.vue'
import { useSession } from './stores/session'

declare module 'vue-router' {
  interface RouteMeta {
    nav?: boolean
    order?: number
    admin?: boolean
    /** Node-wide admins only (an admin scoped to a region may not). */
    nodeAdmin?: boolean
    operator?: boolean
    public?: boolean
  }
}

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./features/login/LoginPage.vue'), meta: { public: true } },
  {
    path: '/',
    component: ConsoleLayout,
    redirect: '/live',
    children: [
      { path: '/live', name: 'live', component: () => import('./features/live/LivePage.vue'), meta: { nav: true, order: 1 } },
      {
        path: '/playback',
        name: 'playback',
        component: () => import('./features/playback/PlaybackPage.vue'),
        meta: { nav: true, order: 2, operator: true },
      },
      {
        path: '/alarms',
        name: 'alarms',
        component: () => import('./features/alarms/AlarmsPage.vue'),
        meta: { nav: true, order: 2.5 },
      },
      {
        path: '/cameras',
        name: 'cameras',
        component: () => import('./features/cameras/CamerasPage.vue'),
        meta: { nav: true, order: 3 },
      },
      {
        path: '/status',
        name: 'status',
        component: () => import('./features/status/StatusPage.vue'),
        meta: { nav: true, order: 4 },
      },
      {
        path: '/gb',
        name: 'gb',
        component: () => import('./features/gb/GbDevicesPage.vue'),
        meta: { nav: true, order: 4.5, admin: true },
      },
      {
        path: '/users',
        name: 'users',
        component: () => import('./features/users/UsersPage.vue'),
        meta: { nav: true, order: 5, admin: true },
      },
      {
        path: '/audit',
        name: 'audit',
        component: () => import('./features/audit/AuditPage.vue'),
        meta: { nav: true, order: 6, admin: true },
      },
      {
        path: '/uppers',
        name: 'uppers',
        component: () => import('./features/uppers/UppersPage.vue'),
        meta: { nav: true, order: 7, admin: true, nodeAdmin: true },
      },
    ],
  },
  { path: '/:pathMatch(.*)*', redirect: '/live' },
]

export const router = createRouter({ history: createWebHistory('/'), routes })

router.beforeEach(async (to) => {
  const session = useSession()
  if (!session.checked) await session.refresh()
  // A user who must change the initial password stays on the login page's password form.
  const mustChange = session.user?.must_change_password === true
  if (to.meta.public) return session.user && !mustChange && to.name === 'login' ? '/live' : true
  if (!session.user) return { path: '/login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (mustChange) return '/login'
  if (to.meta.admin && !session.isAdmin) return '/live'
  if (to.meta.nodeAdmin && !session.isNodeAdmin) return '/live'
  if (to.meta.operator && !session.canPlayback) return '/live'
  return true
})

setUnauthorizedHandler(() => {
  useSession().forget()
  if (router.currentRoute.value.name !== 'login') void router.push('/login')
})
