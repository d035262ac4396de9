/** vue-i18n setup: zh-CN by default, the operator's choice remembered in localStorage. */
import { createI18n } from 'vue-i18n'
import zhCN from './zh-CN'
import en from './en'

type Widen<T> = T extends string ? string : { [K in keyof T]: Widen<T[K]> }
/** Shape of every message file: the zh-CN keys, any strings. */
export type Messages = Widen<typeof zhCN>

export const LOCALES = ['zh-CN', 'en'] as const
export type Locale = (typeof LOCALES)[number]
const STORAGE_KEY = 'vigil.locale'

function initialLocale(): Locale {
  const saved = localStorage.getItem(STORAGE_KEY)
  return (LOCALES as readonly string[]).includes(saved ?? '') ? (saved as Locale) : 'zh-CN'
}

export const i18n = createI18n({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zhCN as Messages, en } as Record<Locale, Messages>,
})

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale
  localStorage.setItem(STORAGE_KEY, locale)
  document.documentElement.lang = locale
}
