"""The watched-folder sync: a real local folder kept in step with a namespace folder."""
