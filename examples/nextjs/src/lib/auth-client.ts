"use client";
// better-auth's browser client (same origin: the app's /api/auth/*).
import { createAuthClient } from "better-auth/react";

export const authClient = createAuthClient();
