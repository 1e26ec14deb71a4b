/**
 * Erasing a person cannot be undone: the admin types the person's email to confirm. Surrounding
 * spaces and letter case do not matter (addresses are compared as the server stores them).
 */
export function erasureConfirmed(typed: string, email: string): boolean {
  const want = email.trim().toLowerCase()
  return want.length > 0 && typed.trim().toLowerCase() === want
}
