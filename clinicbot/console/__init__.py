"""Staff console: conversations, the follow-up queue, feedback, insight and export."""
